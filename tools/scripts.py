"""``list_script_templates``, ``generate_script`` and ``save_script``: remediation scripts from fixed templates.

The server never runs a script. Generating is pure; saving writes one file into the workspace's scripts/ folder.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import anyio.to_thread
from mcp.server.mcpserver import Context, MCPServer
from mcp.types import ToolAnnotations
from pydantic import BaseModel, Field

from generators.remediation import GeneratedScript, SavedScript, TemplateInfo
from tools.access import authorize
from tools.errors import domain_errors
from tools.services import Services, services

IssueType = Annotated[
    str,
    Field(
        description="Issue to fix: cpu_high, memory_high, disk_full, process_memory_high, service_restart or "
        "disk_health (list_script_templates shows each one's parameters)."
    ),
]
PlatformArg = Annotated[
    Literal["auto", "bash", "powershell"],
    Field(description="Shell to write for: bash (Linux), powershell (Windows), or auto (this server's host)."),
]
Parameters = Annotated[
    dict[str, str | int | float] | None,
    Field(
        description='Template parameters by name, e.g. {"pid": 4242} or {"clean_dir": "/var/log/myapp"}. Each is '
        "validated against its kind's pattern; unknown names are rejected. Omitted ones take their defaults."
    ),
]


class TemplateList(BaseModel):
    """The remediation script templates, with counts."""

    templates: list[TemplateInfo] = Field(description="Every template: each issue type for bash, then PowerShell.")
    count: int = Field(description="Number of templates.")
    issue_types: list[str] = Field(description="Issue types there are templates for.")
    count_by_platform: dict[str, int] = Field(description="Number of templates per platform.")


def register(server: MCPServer) -> None:
    """Add the remediation script tools to ``server``."""
    pure = ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=False)

    @server.tool(title="List remediation script templates", annotations=pure)
    async def list_script_templates(ctx: Context[Services, Any]) -> TemplateList:
        """The remediation script templates: issue type, platform, what the script checks and changes, whether
        applying it needs root / Administrator, how to run it, and each parameter with its rule and default.
        """
        authorize("read")
        templates = services(ctx).scripts.list_templates()
        by_platform: dict[str, int] = {}
        for template in templates:
            by_platform[template.platform] = by_platform.get(template.platform, 0) + 1
        return TemplateList(
            templates=templates,
            count=len(templates),
            issue_types=list(dict.fromkeys(template.issue_type for template in templates)),
            count_by_platform=by_platform,
        )

    @server.tool(title="Generate a remediation script", annotations=pure)
    async def generate_script(
        ctx: Context[Services, Any],
        issue_type: IssueType,
        platform: PlatformArg = "auto",
        parameters: Parameters = None,
    ) -> GeneratedScript:
        """Write a remediation script for an issue, from a fixed template, and return its text. Nothing is run.

        The script is a DRY RUN by default: it inspects and prints what it would change. A human applies it with
        --apply (bash) or -Apply (PowerShell); see run_command. Parameter values are validated strictly and
        quoted, so they can never inject commands. Needs the `improve` role.
        """
        authorize("improve")
        with domain_errors():
            return services(ctx).scripts.generate(issue_type, platform, parameters)

    @server.tool(
        title="Save a remediation script",
        annotations=ToolAnnotations(
            read_only_hint=False, destructive_hint=True, idempotent_hint=True, open_world_hint=False
        ),
    )
    async def save_script(
        ctx: Context[Services, Any],
        issue_type: IssueType,
        platform: PlatformArg = "auto",
        parameters: Parameters = None,
        filename: Annotated[
            str | None,
            Field(
                description="Bare file name inside the workspace's scripts/ folder, ending in .sh (bash) or .ps1 "
                "(PowerShell); default fix_<issue_type>.sh/.ps1. A file of that name is replaced."
            ),
        ] = None,
    ) -> SavedScript:
        """Generate a remediation script (as generate_script does) and save it in the workspace's scripts/ folder.

        Returns the saved path, its SHA-256 and size, and the commands to dry-run and apply it. Nothing is run.
        Needs `admin`: it writes into the server's workspace.
        """
        authorize("admin")
        svc = services(ctx)
        with domain_errors():
            script = svc.scripts.generate(issue_type, platform, parameters)
            return await anyio.to_thread.run_sync(svc.scripts.save, script, svc.scripts_dir, filename)
