"""``list_script_templates``, ``generate_script`` and ``save_script``: remediation scripts from fixed templates.

The server never runs a script. Generating is pure; saving writes one file into the workspace's scripts/ folder.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal, Protocol

import anyio.to_thread
from mcp.server.mcpserver import Context, MCPServer
from mcp.types import ToolAnnotations
from pydantic import BaseModel, Field

from generators.remediation import GeneratedScript, SavedScript, TemplateInfo
from tools.access import authorize
from tools.errors import domain_errors
from tools.services import Services, ServicesOf

if TYPE_CHECKING:  # what the services are, for the type checker
    from pathlib import Path

    from generators.remediation import ScriptGenerator


IssueType = Annotated[
    str,
    Field(description="cpu_high, memory_high, disk_full, process_memory_high, service_restart or disk_health."),
]
PlatformArg = Annotated[
    Literal["auto", "bash", "powershell"],
    Field(description="bash (Linux), powershell (Windows) or auto (this host's)."),
]
Parameters = Annotated[
    dict[str, str | int | float] | None,
    Field(
        description='Template parameters, e.g. {"pid": 4242}, each checked against its rule (list_script_templates); '
        "omitted: defaults."
    ),
]


class Needs(Protocol):
    """What the scripts tools use of the server's services (:class:`tools.services.Services` has them all)."""

    @property
    def scripts(self) -> ScriptGenerator: ...

    @property
    def scripts_dir(self) -> Path: ...


class TemplateList(BaseModel):
    """The remediation script templates."""

    templates: list[TemplateInfo] = Field(description="Bash templates, then PowerShell.")
    count: int = Field(description="Templates in all.")
    issue_types: list[str] = Field(description="Issue types there are templates for.")
    count_by_platform: dict[str, int] = Field(description="Templates per platform.")


def register(server: MCPServer, deps: ServicesOf[Needs]) -> None:
    """Add the remediation script tools to ``server``."""
    pure = ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=False)

    @server.tool(title="List remediation script templates", annotations=pure)
    async def list_script_templates(ctx: Context[Services, Any]) -> TemplateList:
        """The remediation script templates: what each checks and changes, its parameters, and how to run it."""
        authorize("read")
        templates = deps(ctx).scripts.list_templates()
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
        """Write a remediation script from a fixed template and return it; nothing is run. Scripts are dry runs unless
        a human runs them with --apply (bash) or -Apply (PowerShell). Parameters are validated and quoted:
        they cannot inject commands. Needs `improve`.
        """
        authorize("improve")
        with domain_errors():
            return deps(ctx).scripts.generate(issue_type, platform, parameters)

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
                description="File name in the workspace's scripts/ folder, ending .sh or .ps1 (default "
                "fix_<issue_type>); a file of that name is replaced."
            ),
        ] = None,
    ) -> SavedScript:
        """As generate_script, and save the script in the workspace's scripts/ folder, with the commands to dry-run and
        apply it. Nothing is run. Needs `admin`.
        """
        authorize("admin")
        svc = deps(ctx)
        with domain_errors():
            script = svc.scripts.generate(issue_type, platform, parameters)
            return await anyio.to_thread.run_sync(svc.scripts.save, script, svc.scripts_dir, filename)
