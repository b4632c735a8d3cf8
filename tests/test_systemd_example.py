"""The systemd example: install.sh fills in the unit (hardening and limits kept), writes a private environment file
with a fresh API key once, and enables the user service (systemctl replaced by a recorder here)."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "examples" / "systemd" / "install.sh"
HARDENING = {
    "NoNewPrivileges": "true",
    "PrivateTmp": "true",
    "ProtectSystem": "strict",
    "ProtectHome": "read-only",
    "Restart": "on-failure",
    "MemoryMax": "2G",
    "CPUQuota": "200%",
    "LimitNOFILE": "65536",  # room for the HTTP connection cap and the server's own files
}


def run_install(tmp_path: Path) -> subprocess.CompletedProcess[str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    recorder = bin_dir / "systemctl"
    recorder.write_text(f'#!/bin/sh\necho "$@" >> {tmp_path / "systemctl.log"}\n', encoding="utf-8")
    recorder.chmod(0o755)
    env = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "HOME": str(tmp_path / "home"),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "XDG_DATA_HOME": str(tmp_path / "data"),
    }
    return subprocess.run(
        ["bash", str(SCRIPT), str(tmp_path / "ws")], capture_output=True, text=True, env=env, timeout=600, check=False
    )


def unit_values(text: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in text.splitlines() if "=" in line and not line.startswith("#"))
    return {key.strip(): value.strip() for key, value in pairs}


@pytest.mark.slow
def test_install_writes_a_hardened_unit_and_a_private_key_once(tmp_path: Path) -> None:
    if not (ROOT / ".venv" / "bin" / "self-building-mcp").exists():
        pytest.skip("needs the repository's .venv (the README test command creates it)")
    first = run_install(tmp_path)
    assert first.returncode == 0, first.stderr
    unit = (tmp_path / "config" / "systemd" / "user" / "self-building-mcp.service").read_text(encoding="utf-8")
    values = unit_values(unit)
    assert "@" not in unit.replace("%h", "")
    assert {k: values[k] for k in HARDENING} == HARDENING
    assert values["ExecStart"].startswith(f"{ROOT}/.venv/bin/self-building-mcp serve --transport http")
    assert str(tmp_path / "ws") in values["ReadWritePaths"]
    env_file = tmp_path / "config" / "self-building-mcp" / "env"
    assert values["EnvironmentFile"] == str(env_file)
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    key_line = env_file.read_text(encoding="utf-8").splitlines()[0]
    assert key_line.startswith("SELF_BUILDING_MCP_API_KEY=") and len(key_line) > 40
    assert key_line.split("=", 1)[1] not in first.stdout, "the key is not printed"

    second = run_install(tmp_path)
    assert second.returncode == 0, second.stderr
    assert env_file.read_text(encoding="utf-8").splitlines()[0] == key_line, "an existing key is kept"
    calls = (tmp_path / "systemctl.log").read_text(encoding="utf-8").splitlines()
    assert calls == ["--user daemon-reload", "--user enable --now self-building-mcp.service"] * 2


def test_install_script_passes_shellcheck() -> None:
    shellcheck = shutil.which("shellcheck") or str(ROOT / ".venv" / "bin" / "shellcheck")
    if not Path(shellcheck).exists():
        pytest.skip("shellcheck is not installed")
    done = subprocess.run([shellcheck, str(SCRIPT)], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout
