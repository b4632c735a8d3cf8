"""``query_error_patterns``: the tenant's log lines grouped into templates, error-heavy ones first."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Protocol

import anyio.to_thread
from mcp.server.mcpserver import Context, MCPServer
from mcp.types import ToolAnnotations
from pydantic import BaseModel, Field

from telemetry.ingest import check_tenant
from telemetry.learning.live import ErrorPattern
from tools.access import authorize
from tools.errors import domain_errors
from tools.services import Services, ServicesOf

if TYPE_CHECKING:  # what the services are, for the type checker
    from telemetry.clock import Clock
    from telemetry.learning.live import PatternWatch


class Needs(Protocol):
    """What the patterns tools use of the server's services (:class:`tools.services.Services` has them all)."""

    @property
    def clock(self) -> Clock: ...

    @property
    def patterns(self) -> PatternWatch: ...

    @property
    def analyses(self) -> anyio.CapacityLimiter | None: ...


class ErrorPatternsResult(BaseModel):
    tenant_id: str = Field(description="Tenant.")
    time_range_hours: float = Field(description="Window, whole hours, ending now.")
    patterns: list[ErrorPattern] = Field(description="Most error lines first, then most lines.")
    has_more: bool = Field(description="True: more than `limit`.")
    total_patterns: int = Field(description="Patterns with lines in the window.")
    lines: int = Field(description="Log lines in the window.")
    error_lines: int = Field(description="Lines at an error level or reading as errors.")


def register(server: MCPServer, deps: ServicesOf[Needs]) -> None:
    """Add the error-pattern tool to ``server``."""

    @server.tool(title="Error patterns", annotations=ToolAnnotations(read_only_hint=True, open_world_hint=False))
    async def query_error_patterns(
        ctx: Context[Services, Any],
        time_range_hours: Annotated[float, Field(gt=0, le=24 * 90, description="Window, in hours (max 90 days).")] = 24,
        tenant_id: Annotated[str, Field(description="Tenant whose logs to group.")] = "default",
        limit: Annotated[int, Field(ge=1, le=200, description="Most patterns to return (1-200).")] = 20,
    ) -> ErrorPatternsResult:
        """A tenant's log lines grouped into message templates (variable parts as <*>; JSON lines by their message
        field), with counts, first and last seen, an example and the components that logged them.
        """
        authorize("read", tenant_id)
        svc = deps(ctx)
        with domain_errors():
            check_tenant(tenant_id)
        end = svc.clock()
        start = end - time_range_hours * 3600
        report = await anyio.to_thread.run_sync(
            lambda: svc.patterns.report(tenant_id, start, end, limit), limiter=svc.analyses
        )
        return ErrorPatternsResult(
            tenant_id=tenant_id,
            time_range_hours=time_range_hours,
            patterns=report.patterns,
            has_more=report.total_patterns > len(report.patterns),
            total_patterns=report.total_patterns,
            lines=report.lines,
            error_lines=report.error_lines,
        )
