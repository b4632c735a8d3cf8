"""The ``diagnose_system`` prompt: status → performance analysis → remediation script."""

from __future__ import annotations

from typing import Literal

from mcp.server.mcpserver import MCPServer


def register(server: MCPServer) -> None:
    """Add the prompts to ``server``."""

    @server.prompt(title="Diagnose this system")
    def diagnose_system(symptom: str = "", platform: Literal["auto", "bash", "powershell"] | str = "auto") -> str:
        """Walk an agent from the system status to the bottleneck to a remediation script a human can run."""
        concern = f'The user reports: "{symptom.strip()}".\n\n' if symptom.strip() else ""
        return f"""{concern}Diagnose this host step by step with the self-building-mcp tools:

1. Call get_system_status. Read `verdict` and `reasons`; note CPU, memory, the fullest disk, I/O rates and GPUs.
2. Call get_monitoring_status and query_monitoring_events (since="1h") to see what has been happening. If
   monitoring is not running and the problem comes and goes, call start_monitoring.
3. Call analyze_system_performance. For each bottleneck, read its evidence and suggestions.
4. Call get_top_processes (sort_by="cpu" or "memory") to name the processes behind it.
5. Call list_script_templates, pick the `remediation_template` of the worst bottleneck, and call generate_script
   with platform="{platform}" and the parameters it needs (a PID or process name from step 4, a path, ...).
6. Show the user the diagnosis (figures, cause) and the script. It runs as a dry run by default; explain that
   they must re-run it with --apply (bash) or -Apply (PowerShell) to act, and what it will change.
   Offer save_script to store it in the workspace's scripts/ folder. Never claim the fix was applied."""
