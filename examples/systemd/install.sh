#!/usr/bin/env bash
# Install self-building-mcp as a systemd *user* service (no root needed):
#   examples/systemd/install.sh [WORKSPACE]
# Creates the virtual environment (.venv in the repository) if missing, an environment file
# ~/.config/self-building-mcp/env (mode 0600) with a fresh API key unless one exists, and the unit
# ~/.config/systemd/user/self-building-mcp.service; then enables and starts it.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
workspace="$(realpath -m "${1:-$HOME/self-building-workspace}")"
config_dir="${XDG_CONFIG_HOME:-$HOME/.config}"
env_file="$config_dir/self-building-mcp/env"
unit_dir="$config_dir/systemd/user"
venv="$repo/.venv"

if [ ! -x "$venv/bin/self-building-mcp" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q -e "$repo"
fi
mkdir -p "$workspace" "$unit_dir" "$(dirname "$env_file")" "${XDG_DATA_HOME:-$HOME/.local/share}/self-building-mcp"

if [ ! -f "$env_file" ]; then
  umask 077
  key="$("$venv/bin/python" -c 'import secrets; print(secrets.token_urlsafe(32))')"
  {
    echo "SELF_BUILDING_MCP_API_KEY=$key"
    echo "SELF_BUILDING_WORKSPACE=$workspace"
    echo "SELF_BUILDING_LOG_LEVEL=INFO"
  } > "$env_file"
  echo "wrote $env_file (API key for clients: the SELF_BUILDING_MCP_API_KEY line)"
fi
chmod 600 "$env_file"

sed -e "s|@VENV@|$venv|g" -e "s|@WORKSPACE@|$workspace|g" -e "s|@ENV_FILE@|$env_file|g" \
  "$repo/examples/systemd/self-building-mcp.service" > "$unit_dir/self-building-mcp.service"
echo "installed $unit_dir/self-building-mcp.service"

systemctl --user daemon-reload
systemctl --user enable --now self-building-mcp.service
echo "started; logs: journalctl --user -u self-building-mcp -f; health: curl http://127.0.0.1:8765/health"
