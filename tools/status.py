"""``get_system_status`` and the ``system://status`` resource."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from mcp.server.mcpserver import Context, MCPServer
from mcp.types import ToolAnnotations
from pydantic import BaseModel, Field

from telemetry.cloudwatch.streamer import SourceHealth
from telemetry.host.models import GpuStatus, HostStatus, Verdict
from telemetry.monitoring.health import assess_monitored
from telemetry.monitoring.monitor import MonitorState
from tools.access import authorize, authorize_resource
from tools.services import Services, ServicesOf
from tools.sources import Needs as SourceNeeds
from tools.sources import source_health

if TYPE_CHECKING:  # what the services are, for the type checker
    from generators.validation.jail import JailStatus
    from telemetry.clock import Clock
    from telemetry.host.sampler import Sampler
    from telemetry.monitoring.monitor import Monitor
    from tools.services import ToolStats


STATUS_URI = "system://status"


class Needs(SourceNeeds, Protocol):
    """What the status tools use of the server's services (:class:`tools.services.Services` has them all)."""

    @property
    def clock(self) -> Clock: ...

    @property
    def monitor(self) -> Monitor: ...

    @property
    def sampler(self) -> Sampler: ...

    @property
    def started_at(self) -> float: ...

    @property
    def stats(self) -> ToolStats: ...

    @property
    def version(self) -> str: ...

    @property
    def sandbox(self) -> JailStatus: ...


class ServerInfo(BaseModel):
    version: str = Field(description="Server version.")
    uptime_seconds: float = Field(description="Seconds since start-up.")
    tool_calls: int = Field(description="Tool calls since start-up.")
    tool_failures: int = Field(description="Of those, failed.")
    calls_by_tool: dict[str, int] = Field(description="Calls per tool; '(unknown tool)': names the server lacks.")
    failures_by_tool: dict[str, int] = Field(description="Failed calls per tool.")


class SystemStatus(BaseModel):
    verdict: Verdict = Field(description="Overall health.")
    reasons: list[str] = Field(description="Why it is not healthy.")
    note: str | None = Field(None, description="Set while monitoring is stopped with events left open (not counted).")
    host: HostStatus = Field(description="The host now.")
    gpu: GpuStatus = Field(description="GPU devices, or why there are none.")
    monitoring: MonitorState = Field(description="Threshold monitoring.")
    server: ServerInfo = Field(description="This server's counters.")
    telemetry_sources: list[SourceHealth] = Field(description="Each telemetry source's health.")
    sandbox: str = Field(description="How generated code runs.")


async def build_status(svc: Needs) -> SystemStatus:
    """The status snapshot: served from the sampler's latest reading, refreshed when stale."""
    snap = await svc.sampler.latest()
    monitor = svc.monitor
    health = assess_monitored(snap, monitor)
    stats = svc.stats
    return SystemStatus(
        verdict=health.verdict,
        reasons=health.reasons,
        note=health.note,
        host=snap.host,
        gpu=snap.gpu,
        monitoring=monitor.state(),
        server=ServerInfo(
            version=svc.version,
            uptime_seconds=round(svc.clock() - svc.started_at, 1),
            tool_calls=sum(stats.calls.values()),
            tool_failures=sum(stats.failures.values()),
            calls_by_tool=dict(stats.calls),
            failures_by_tool=dict(stats.failures),
        ),
        telemetry_sources=source_health(svc),
        sandbox=svc.sandbox.summary(),
    )


def register(server: MCPServer, deps: ServicesOf[Needs]) -> None:
    """Add the status tool and resource to ``server``."""

    @server.tool(
        title="System status",
        annotations=ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=False),
    )
    async def get_system_status(ctx: Context[Services, Any]) -> SystemStatus:
        """Host and GPU health now, with a verdict (healthy, degraded or critical) and its reasons, the monitoring
        state, this server's counters and its jail. From the latest sample.
        """
        authorize("read")
        return await build_status(deps(ctx))

    @server.resource(
        STATUS_URI,
        name="system_status",
        title="System status",
        description="The get_system_status snapshot as JSON.",
        mime_type="application/json",
    )
    async def system_status_resource() -> str:
        authorize_resource("read")
        return (await build_status(deps(None))).model_dump_json(indent=2)
