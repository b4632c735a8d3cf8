"""Generated tools as MCP tools (:mod:`generators.toolhost` runs them).

A tool is named ``gen_<name>_<8 hex digits of its tenant and name>`` — what every MCP client accepts (letters,
digits, ``_``; at most 64 characters), no built-in tool starts with ``gen_``, and no two tenants' tools share a name —
and is listed for, and callable by, keys with the read role on its tenant only (admins: every tenant); to any other
key it does not exist, and the server's own counters (``get_system_status``, ``/metrics``) count every generated tool
under one label, :data:`GENERATED_LABEL`, so that no tenant learns another's tool names. It answers with structured
content (its result object) and the same object as JSON text.
The resource ``tools://generated`` tells each tool's version, owner, calls and failures (removed and broken ones
too), for the caller's tenants.
"""

from __future__ import annotations

import functools
import hashlib
import json
from typing import Any, Protocol

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import CallToolResult, TextContent, ToolAnnotations
from mcp.types import Tool as MCPTool
from pydantic import BaseModel, Field

from generators.errors import GeneratedToolError
from generators.toolhost import GeneratedTools, LiveTool, ToolRecord
from telemetry.selfcheck.models import ToolOwner
from tools import outcome
from tools.access import Caller, authorize_resource
from tools.errors import ToolFailure
from tools.services import ServicesOf

PREFIX = "gen_"
LIST_URI = "tools://generated"
GENERATED_LABEL = "(generated tool)"


@functools.lru_cache(maxsize=4096)  # asked on every list and call of a generated tool
def tool_name(tenant: str, name: str) -> str:
    """The MCP name of ``tenant``'s tool ``name``."""
    digest = hashlib.sha256(f"{tenant}/{name}".encode()).hexdigest()[:8]
    return f"{PREFIX}{name[:51]}_{digest}"


def is_generated(name: str) -> bool:
    return name.startswith(PREFIX)


def owners(tools: GeneratedTools) -> dict[str, ToolOwner]:
    """Every generated tool's MCP name (removed ones too: their recorded calls stay theirs) -> its tenant and
    component, for the self-analysis."""
    return {tool_name(r.tenant, r.name): ToolOwner(r.tenant, r.name, r.status != "removed") for r in tools.records()}


class GeneratedSurface:
    """What the tool surface asks of the generated tools: the list a caller sees, and a call."""

    def __init__(self, tools: GeneratedTools) -> None:
        self.tools = tools

    def find(self, name: str) -> LiveTool | None:
        """The tool served under the MCP name ``name`` now."""
        if not is_generated(name):
            return None
        return next((t for t in self.tools.live() if tool_name(t.record.tenant, t.record.name) == name), None)

    def visible(self, name: str, caller: Caller) -> LiveTool | None:
        """The tool of that name if ``caller`` may use it; else None, as if there were none."""
        found = self.find(name)
        if found is None or not caller.has_role("read") or not caller.may_use(found.record.tenant):
            return None
        return found

    def listed(self, caller: Caller) -> list[MCPTool]:
        if not caller.has_role("read"):
            return []
        return [
            MCPTool(
                name=tool_name(t.record.tenant, t.record.name),
                title=f"{t.record.name} (generated for {t.record.tenant}, v{t.record.version})",
                description=t.spec.description or f"Generated tool {t.record.name}.",
                input_schema=t.spec.input_schema,
                output_schema=t.spec.output_schema,
                annotations=ToolAnnotations(read_only_hint=True, open_world_hint=False),
            )
            for t in self.tools.live()
            if caller.may_use(t.record.tenant)
        ]

    async def call(self, name: str, arguments: dict[str, Any], caller: Caller) -> CallToolResult:
        found = self.visible(name, caller)
        if found is None:
            raise ToolError(f"Unknown tool: {name}")  # as for any name this caller has no tool of
        try:
            result = await self.tools.call(found.record.tenant, found.record.name, arguments)
        except GeneratedToolError as exc:  # its kind is how the call failed (a crash of its code: internal)
            outcome.note(outcome.kind_of(exc))
            raise ToolFailure(f"Error executing tool {name}: {exc}", exc.kind) from None
        return CallToolResult(content=[TextContent(type="text", text=json.dumps(result))], structured_content=result)


class GeneratedToolView(BaseModel):
    tool: str = Field(description="Its MCP name.")
    tenant_id: str = Field(description="Owner tenant.")
    status: str = Field(description="active, broken (see error) or removed.")
    version: int = Field(description="Its code's number: new code the next one, code served before its own.")
    module: str = Field(description="Workspace file.")
    deployment_id: str = Field(description="The deployment that brought it.")
    calls: int = Field(description="Calls since it was registered.")
    failures: int = Field(description="Of those, failed.")
    error: str | None = Field(description="Why it is broken.")


class GeneratedToolList(BaseModel):
    tools: list[GeneratedToolView] = Field(description="By tenant and name.")


class Needs(Protocol):
    @property
    def generated_tools(self) -> GeneratedTools | None: ...


def view(record: ToolRecord) -> GeneratedToolView:
    return GeneratedToolView(
        tool=tool_name(record.tenant, record.name),
        tenant_id=record.tenant,
        status=record.status,
        version=record.version,
        module=record.module,
        deployment_id=record.deployment_id,
        calls=record.calls,
        failures=record.failures,
        error=record.error,
    )


def register(server: MCPServer, deps: ServicesOf[Needs]) -> None:
    @server.resource(
        LIST_URI,
        name="generated_tools",
        title="Generated tools",
        description="The tools the server generated for itself (gen_<name>_<hash>) that the caller may use: "
        "version, owner, calls, failures; removed and broken ones too.",
        mime_type="application/json",
    )
    async def generated_tools_resource() -> str:
        caller = authorize_resource("read")
        tools = deps(None).generated_tools
        records = tools.records() if tools is not None else []
        return GeneratedToolList(tools=[view(r) for r in records if caller.may_use(r.tenant)]).model_dump_json(indent=2)
