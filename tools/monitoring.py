"""Threshold monitoring tools and the ``monitoring://events`` resource."""

from __future__ import annotations

import math
import re
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Protocol

from mcp.server.mcpserver import Context, MCPServer
from mcp.types import ToolAnnotations
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from telemetry.monitoring.events import MAX_QUERY_LIMIT, EventPage, MonitoringEvent
from telemetry.monitoring.health import Health, assess_monitored
from telemetry.monitoring.monitor import MonitorState
from telemetry.monitoring.thresholds import EventType, Severity, Thresholds
from tools.access import authorize, authorize_resource
from tools.errors import ToolFailure, shown
from tools.services import Services, ServicesOf

if TYPE_CHECKING:  # what the services are, for the type checker
    from telemetry.clock import Clock
    from telemetry.host.sampler import Sampler
    from telemetry.monitoring.monitor import Monitor


EVENTS_URI = "monitoring://events"
_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class Needs(Protocol):
    """What the monitoring tools use of the server's services (:class:`tools.services.Services` has them all)."""

    @property
    def clock(self) -> Clock: ...

    @property
    def monitor(self) -> Monitor: ...

    @property
    def sampler(self) -> Sampler: ...


class ThresholdUpdate(BaseModel):
    """Thresholds to change; omitted fields keep their current value."""

    model_config = ConfigDict(extra="forbid")

    cpu_percent: float | None = Field(None, description="cpu_high above this CPU % (0-100].")
    memory_percent: float | None = Field(None, description="memory_high above this memory % (0-100].")
    disk_percent: float | None = Field(None, description="disk_full above this % of any mount (0-100].")
    cpu_spike_points: float | None = Field(None, description="cpu_spike above this jump (0-100].")
    gpu_temperature_c: float | None = Field(None, description="gpu_temperature_high above this °C (0-150].")
    gpu_memory_percent: float | None = Field(None, description="gpu_memory_high above this % (0-100].")
    consecutive_samples: int | None = Field(None, description="Samples in a row before raising (1-100).")
    clear_samples: int | None = Field(None, description="Samples in a row to clear (1-100).")
    hysteresis_points: float | None = Field(None, description="Clear only below threshold minus this (0-50).")


class MonitoringStatus(BaseModel):
    state: MonitorState = Field(description="Monitoring state.")
    health: Health = Field(description="Verdict on the latest sample.")
    recent_events: list[MonitoringEvent] = Field(description="The 10 newest events.")


class StopResult(BaseModel):
    was_running: bool = Field(description="True if it was running.")
    state: MonitorState = Field(description="State after stopping.")


class ClearResult(BaseModel):
    deleted: int = Field(description="How many events were deleted.")


def merge_thresholds(current: Thresholds, update: ThresholdUpdate | None) -> Thresholds:
    """Apply a partial update; out-of-range values become a ToolError that names the field and the range."""
    if update is None:
        return current
    changes = update.model_dump(exclude_none=True)
    try:
        return Thresholds.model_validate({**current.model_dump(), **changes})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ToolFailure(f"invalid thresholds: {problems}") from exc


def parse_since(since: float | str | None, now: float) -> float | None:
    """Unix seconds, an ISO 8601 time, or an age such as '15m', '2h', '1d'."""
    if since is None:
        return None
    try:
        if isinstance(since, float | int):
            start = float(since)
        elif match := _RELATIVE.match(since):
            start = now - float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        else:
            start = datetime.fromisoformat(since.replace("Z", "+00:00")).timestamp()
    except (ValueError, OverflowError):
        start = math.nan
    if not math.isfinite(start):  # NaN would filter nothing, an age of 10^400 days everything
        raise ToolFailure(
            f"since={shown(since)} is not a time: give Unix seconds, ISO 8601 (2026-11-25T10:00:00Z) or an age like "
            "'2h'"
        )
    return start


async def monitoring_status(svc: Needs) -> MonitoringStatus:
    monitor = svc.monitor
    recent = await monitor.store.query(limit=10)
    snap = await svc.sampler.latest()
    return MonitoringStatus(
        state=monitor.state(),
        health=assess_monitored(snap, monitor),
        recent_events=recent.events,
    )


def register(server: MCPServer, deps: ServicesOf[Needs]) -> None:
    """Add the monitoring tools and the events resource to ``server``."""
    local = ToolAnnotations(open_world_hint=False)

    @server.tool(title="Start monitoring", annotations=local)
    async def start_monitoring(
        ctx: Context[Services, Any],
        interval_seconds: Annotated[
            float, Field(ge=0.1, le=3600, description="Seconds between samples (0.1-3600).")
        ] = 30.0,
        thresholds: Annotated[
            ThresholdUpdate | None, Field(description="Thresholds to change first; omitted ones stay.")
        ] = None,
    ) -> MonitoringStatus:
        """Start threshold monitoring (or retune it while it runs). An event is raised once a condition holds for
        `consecutive_samples` samples, is updated while it lasts and clears with hysteresis; events are
        stored and pushed on monitoring://events. Needs `admin`.
        """
        authorize("admin")
        svc = deps(ctx)
        new = merge_thresholds(svc.monitor.thresholds, thresholds)
        await svc.monitor.start(interval=interval_seconds, thresholds=new)
        return await monitoring_status(svc)

    @server.tool(title="Stop monitoring", annotations=ToolAnnotations(idempotent_hint=True, open_world_hint=False))
    async def stop_monitoring(ctx: Context[Services, Any]) -> StopResult:
        """Stop threshold monitoring. Stored events stay; status snapshots still work. Needs `admin`."""
        authorize("admin")
        svc = deps(ctx)
        was_running = await svc.monitor.stop()
        return StopResult(was_running=was_running, state=svc.monitor.state())

    @server.tool(title="Monitoring status", annotations=ToolAnnotations(read_only_hint=True, open_world_hint=False))
    async def get_monitoring_status(ctx: Context[Services, Any]) -> MonitoringStatus:
        """Whether monitoring runs, its interval and thresholds, the current health and the 10 latest events."""
        authorize("read")
        return await monitoring_status(deps(ctx))

    @server.tool(title="Query events", annotations=ToolAnnotations(read_only_hint=True, open_world_hint=False))
    async def query_monitoring_events(
        ctx: Context[Services, Any],
        event_type: Annotated[EventType | None, Field(description="Only events of this type.")] = None,
        severity: Annotated[Severity | None, Field(description="Only events of this severity.")] = None,
        since: Annotated[
            float | str | None,
            Field(description="Only events seen since: Unix seconds, ISO 8601 or an age ('15m', '2h', '1d')."),
        ] = None,
        limit: Annotated[int, Field(ge=1, le=MAX_QUERY_LIMIT, description="Page size (1-500).")] = 50,
    ) -> EventPage:
        """Stored monitoring events, newest first, filtered."""
        authorize("read")
        svc = deps(ctx)
        start = parse_since(since, svc.clock())
        return await svc.monitor.store.query(event_type=event_type, severity=severity, since=start, limit=limit)

    @server.tool(title="Clear events", annotations=ToolAnnotations(destructive_hint=True, open_world_hint=False))
    async def clear_monitoring_events(ctx: Context[Services, Any]) -> ClearResult:
        """Delete every stored monitoring event and forget open conditions (raised again if they last).
        Needs `admin`."""
        authorize("admin")
        return ClearResult(deleted=await deps(ctx).monitor.clear())

    @server.tool(title="Set thresholds", annotations=ToolAnnotations(idempotent_hint=True, open_world_hint=False))
    async def set_monitoring_thresholds(
        ctx: Context[Services, Any],
        cpu_percent: Annotated[float | None, Field(description="cpu_high above this CPU % (0-100].")] = None,
        memory_percent: Annotated[float | None, Field(description="memory_high above this % (0-100].")] = None,
        disk_percent: Annotated[float | None, Field(description="disk_full above this % (0-100].")] = None,
        cpu_spike_points: Annotated[float | None, Field(description="cpu_spike above this jump (0-100].")] = None,
        gpu_temperature_c: Annotated[float | None, Field(description="GPU temperature limit °C (0-150].")] = None,
        gpu_memory_percent: Annotated[float | None, Field(description="GPU memory limit % (0-100].")] = None,
        consecutive_samples: Annotated[int | None, Field(description="Samples in a row to raise (1-100).")] = None,
        clear_samples: Annotated[int | None, Field(description="Samples in a row to clear (1-100).")] = None,
        hysteresis_points: Annotated[float | None, Field(description="Clear below threshold minus this.")] = None,
    ) -> Thresholds:
        """Change monitoring thresholds (omitted ones stay). They persist across restarts. Needs `admin`."""
        authorize("admin")
        svc = deps(ctx)
        update = ThresholdUpdate(
            cpu_percent=cpu_percent,
            memory_percent=memory_percent,
            disk_percent=disk_percent,
            cpu_spike_points=cpu_spike_points,
            gpu_temperature_c=gpu_temperature_c,
            gpu_memory_percent=gpu_memory_percent,
            consecutive_samples=consecutive_samples,
            clear_samples=clear_samples,
            hysteresis_points=hysteresis_points,
        )
        new = merge_thresholds(svc.monitor.thresholds, update)
        await svc.monitor.set_thresholds(new)
        return new

    @server.resource(
        EVENTS_URI,
        name="monitoring_events",
        title="Monitoring events",
        description="The 50 most recent monitoring events, newest first, as JSON. Updated when events change.",
        mime_type="application/json",
    )
    async def monitoring_events_resource() -> str:
        authorize_resource("read")
        page = await deps(None).monitor.store.query(limit=50)
        return page.model_dump_json(indent=2)
