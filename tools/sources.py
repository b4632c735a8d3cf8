"""``get_telemetry_sources`` and ``get_alarm_states``."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Annotated, Any, Literal, Protocol

import anyio.to_thread
from mcp.server.mcpserver import Context, MCPServer
from mcp.types import ToolAnnotations
from pydantic import BaseModel, Field

from telemetry.cloudwatch.alarm_table import AlarmState
from telemetry.cloudwatch.breaker import BreakerStatus
from telemetry.cloudwatch.publisher import PublisherHealth
from telemetry.cloudwatch.streamer import SourceHealth
from tools.access import authorize
from tools.errors import ToolFailure, bounded, domain_errors
from tools.services import Services, ServicesOf

if TYPE_CHECKING:  # what the services are, for the type checker
    from generators.deploy import AuditLog
    from telemetry.cloudwatch.publisher import MetricPublisher
    from telemetry.cloudwatch.streamer import CloudWatchStreamer
    from telemetry.host.sampler import Sampler


class Needs(Protocol):
    """What the sources tools use of the server's services (:class:`tools.services.Services` has them all)."""

    @property
    def audit(self) -> AuditLog: ...

    @property
    def cloudwatch(self) -> CloudWatchStreamer | None: ...

    @property
    def publisher(self) -> MetricPublisher | None: ...

    @property
    def sampler(self) -> Sampler: ...


class TelemetrySources(BaseModel):
    sources: list[SourceHealth] = Field(description="Each source's health.")
    cloudwatch_enabled: bool = Field(description="Whether CloudWatch streaming is on.")
    publishing: PublisherHealth | None = Field(
        None, description="Publishing of this server's metrics to CloudWatch; null: off."
    )


class AlarmStates(BaseModel):
    alarms: list[AlarmState] = Field(description="Alarms, by name.")
    total: int = Field(description="Alarms matching the filter.")
    has_more: bool = Field(description="True when more matched than `limit`.")
    stale: bool = Field(description="CloudWatch could not be asked now: these are the last known states.")
    last_error: str | None = Field(None, description="Why it could not be asked.")
    breaker: BreakerStatus = Field(description="Breaker of the alarm reads.")


def source_health(svc: Needs) -> list[SourceHealth]:
    """The local sampler and, when enabled, each CloudWatch source."""
    last = svc.sampler.last
    local = SourceHealth(
        name="local",
        enabled=True,
        last_success=last.host.timestamp if last is not None else None,
        mode="samples of this host",
        items_ingested=svc.sampler.samples_taken,
        polls=svc.sampler.samples_taken,
    )
    return [local, *(svc.cloudwatch.health() if svc.cloudwatch is not None else [])]


def register(server: MCPServer, deps: ServicesOf[Needs]) -> None:
    """Add the source tools to ``server``."""
    read_only = ToolAnnotations(read_only_hint=True, open_world_hint=True)

    @server.tool(title="Telemetry sources", annotations=read_only)
    async def get_telemetry_sources(ctx: Context[Services, Any]) -> TelemetrySources:
        """Health of each telemetry source and CloudWatch circuit breaker (while a breaker is open, insights come from
        stored data).
        """
        authorize("read")
        svc = deps(ctx)
        return TelemetrySources(
            sources=source_health(svc),
            cloudwatch_enabled=svc.cloudwatch is not None,
            publishing=svc.publisher.health() if svc.publisher is not None else None,
        )

    @server.tool(title="CloudWatch alarm states", annotations=read_only)
    async def get_alarm_states(
        ctx: Context[Services, Any],
        state: Annotated[
            Literal["OK", "ALARM", "INSUFFICIENT_DATA"] | None, Field(description="Only alarms in this state.")
        ] = None,
        limit: Annotated[int, Field(ge=1, le=500, description="Most alarms to return (1-500).")] = 50,
    ) -> AlarmStates:
        """States of the followed CloudWatch alarms, the newest of DescribeAlarms (cached for up to a minute) and
        EventBridge events; while CloudWatch is unreachable, the last known ones. Only the caller's tenants.
        """
        caller = authorize("read")
        svc = deps(ctx)
        if svc.cloudwatch is None:
            raise ToolFailure(
                "CloudWatch streaming is off: set SELF_BUILDING_ENABLE_CLOUDWATCH_STREAMING=true and configure "
                "alarms to follow (SELF_BUILDING_CLOUDWATCH__ALARM_NAME_PREFIX or alarm_names)",
                "unavailable",
            )
        with domain_errors():
            reading = await svc.cloudwatch.alarm_states()
        if reading.asked:  # an actual AWS call; reads from the state table are not audited
            detail = {"api": "DescribeAlarms", "cache_seconds": svc.cloudwatch.config.alarm_cache_seconds,
                      "state": state, "error": reading.error}  # fmt: skip
            await anyio.to_thread.run_sync(
                partial(
                    svc.audit.append, "cloudwatch_access", "alarms", actor=caller.name, tenant="system", detail=detail
                )
            )
        if reading.problem is not None:
            raise ToolFailure(bounded(reading.problem), "unavailable")
        chosen = [a for a in reading.alarms if (state is None or a.state == state) and caller.may_use(a.tenant)]
        return AlarmStates(
            alarms=chosen[:limit], total=len(chosen), has_more=len(chosen) > limit,
            stale=reading.stale, last_error=reading.error, breaker=reading.breaker,
        )  # fmt: skip
