"""``analyze_system_performance`` and ``get_top_processes``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal, Protocol

import anyio.to_thread
from mcp.server.mcpserver import Context, MCPServer
from mcp.types import ToolAnnotations
from pydantic import BaseModel, Field

from telemetry.host.models import ProcessInfo
from telemetry.host.system import top_processes
from telemetry.monitoring.performance import PerformanceReport, analyze
from tools.access import authorize
from tools.services import Services, ServicesOf

if TYPE_CHECKING:  # what the services are, for the type checker
    from telemetry.host.sampler import Sampler
    from telemetry.monitoring.monitor import Monitor


ANALYSIS_WINDOW = 20  # snapshots: a few minutes at the default interval


class Needs(Protocol):
    """What the performance tools use of the server's services (:class:`tools.services.Services` has them all)."""

    @property
    def monitor(self) -> Monitor: ...

    @property
    def sampler(self) -> Sampler: ...


class TopProcesses(BaseModel):
    sort_by: Literal["cpu", "memory"] = Field(description="Sort order used.")
    processes: list[ProcessInfo] = Field(description="Processes, heaviest first.")


def register(server: MCPServer, deps: ServicesOf[Needs]) -> None:
    """Add the performance tools to ``server``."""
    read_only = ToolAnnotations(read_only_hint=True, open_world_hint=False)

    @server.tool(title="Analyse performance", annotations=read_only)
    async def analyze_system_performance(ctx: Context[Services, Any]) -> PerformanceReport:
        """Find the bottlenecks (CPU, memory, disk, I/O, GPU) in the recent samples and a fresh one: the figures that
        show them, what to do, and a fitting remediation template (see generate_script).
        """
        authorize("read")
        svc = deps(ctx)
        await svc.sampler.refresh()
        history = svc.sampler.history()[-ANALYSIS_WINDOW:]
        top = await anyio.to_thread.run_sync(top_processes, "cpu", 5)
        return analyze(history, svc.monitor.thresholds, top)

    @server.tool(title="Top processes", annotations=read_only)
    async def get_top_processes(
        sort_by: Annotated[Literal["cpu", "memory"], Field(description="CPU use or resident memory.")] = "cpu",
        limit: Annotated[int, Field(ge=1, le=100, description="How many processes (1-100).")] = 10,
    ) -> TopProcesses:
        """The processes using the most CPU (measured over 0.1 s) or memory (resident set size)."""
        authorize("read")
        rows = await anyio.to_thread.run_sync(top_processes, sort_by, limit)
        return TopProcesses(sort_by=sort_by, processes=rows)
