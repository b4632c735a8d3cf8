"""What the browser dashboard shows, assembled from the services for one caller (roles and tenants as the tools check
them: the request's caller is set before these run)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, get_args

import anyio.to_thread

from generators.deploy import Deployment
from telemetry.learning.engine import Analysis
from telemetry.monitoring.thresholds import EventType
from tools.access import authorize
from tools.deployments import summary
from tools.services import Services
from tools.status import build_status

CHART_SECONDS = 3600
MAX_CHART_POINTS = 240  # per series: the newest hour, thinned evenly
MAX_CHART_LINES = 16  # per chart (one per GPU, say)
MAX_EVENTS = 50
MAX_DEPLOYMENTS = 20
MAX_INSIGHTS = 10
INSIGHTS_TTL_SECONDS = 30.0  # the analysis is the costly part: shared by every refresh within this window
WINDOW_CHOICES: tuple[int, ...] = (1, 6, 24, 168)  # the insight windows the page offers, in hours
DEFAULT_WINDOW_HOURS = 24
EVENT_TYPES: tuple[str, ...] = get_args(EventType)


@dataclass(frozen=True)
class Chart:
    """A chart of the page: the local sampler's series, its unit, and the top of its value axis when fixed (percent
    charts run 0-100, so 23 % reads as a quarter, not as a line at the bottom of an auto-scaled axis)."""

    name: str
    label: str
    unit: str
    top: float | None


CHARTS: tuple[Chart, ...] = (
    Chart("host.cpu.percent", "CPU", "%", 100),
    Chart("host.memory.percent", "Memory", "%", 100),
    Chart("gpu.utilization.percent", "GPU", "%", 100),
    Chart("gpu.memory.percent", "GPU memory", "%", 100),
    Chart("gpu.temperature.c", "GPU temperature", "°C", None),
    Chart("gpu.power.watts", "GPU power", "W", None),
)


class BadQuery(ValueError):
    """A query parameter of the state endpoint is not one it accepts."""


def window_hours(raw: str | None) -> int:
    """The insight window a page asked for: one of :data:`WINDOW_CHOICES` (so the cache stays small and an analysis
    is never asked for an arbitrary span)."""
    if raw is None or raw == "":
        return DEFAULT_WINDOW_HOURS
    try:
        hours = float(raw)
    except ValueError:
        hours = math.nan
    if hours not in WINDOW_CHOICES:
        choices = ", ".join(map(str, WINDOW_CHOICES))
        raise BadQuery(f"window_hours={raw[:16]!r} is not offered: give one of {choices}")
    return int(hours)


class InsightCache:
    """The newest analysis per tenant and window, kept for :data:`INSIGHTS_TTL_SECONDS`."""

    def __init__(self) -> None:
        self._kept: dict[tuple[str, int], tuple[float, Analysis]] = {}

    async def get(self, svc: Services, tenant: str, hours: int) -> Analysis:
        now = time.monotonic()
        kept = self._kept.get((tenant, hours))
        if kept is not None and now - kept[0] < INSIGHTS_TTL_SECONDS:
            return kept[1]
        analysis = await anyio.to_thread.run_sync(lambda: svc.learning.analyze(tenant, window_hours=hours))
        self._kept = {k: v for k, v in self._kept.items() if now - v[0] < INSIGHTS_TTL_SECONDS}
        self._kept[(tenant, hours)] = (now, analysis)
        return analysis


async def dashboard_state(
    svc: Services, insights: InsightCache, tenant: str, event_type: str | None, hours: int = DEFAULT_WINDOW_HOURS
) -> dict[str, Any]:
    """Everything one refresh of the page needs, as JSON-ready data; insights over the last ``hours``."""
    caller = authorize("read", tenant)
    status = await build_status(svc)
    events = await svc.monitor.store.query(event_type=event_type, limit=MAX_EVENTS)
    analysis = await insights.get(svc, tenant, hours)
    rows, more = await svc.changes.listing(caller, None, MAX_DEPLOYMENTS)
    charts = await anyio.to_thread.run_sync(_charts, svc, svc.default_tenant)
    return {
        "generated_at": svc.clock(),
        "caller": {"name": caller.name, "roles": sorted(caller.roles), "tenants": caller.describe_tenants()},
        "tenant": tenant,
        "tenant_choices": [tenant] if caller.all_tenants else sorted(caller.tenants),
        "status": status.model_dump(mode="json"),
        "monitoring": status.monitoring.model_dump(mode="json"),
        "event_types": list(EVENT_TYPES),
        "event_filter": event_type,
        "events": [e.model_dump(mode="json") for e in events.events],
        "events_has_more": events.has_more,
        "insights": [i.model_dump(mode="json") for i in analysis.insights[:MAX_INSIGHTS]],
        "opportunities": [o.model_dump(mode="json") for o in analysis.opportunities[:MAX_INSIGHTS]],
        "insight_summary": analysis.summary.model_dump(mode="json"),
        "insight_window_hours": hours,
        "insight_window_choices": list(WINDOW_CHOICES),
        "deployments": [_deployment(d) for d in rows],
        "deployments_has_more": more,
        "charts": charts,
        "can": {"monitor": caller.has_role("admin"), "rollback": caller.has_role("improve")},
    }


def _deployment(d: Deployment) -> dict[str, Any]:
    """A deployment row with the figures measured before and after it (when an improvement cycle judged it)."""
    row = summary(d).model_dump(mode="json")
    found = d.detail.get("figures")
    figures: dict[str, Any] = found if isinstance(found, dict) else {}
    row["figures"] = [f for f in (_figure(name, value) for name, value in figures.items()) if f is not None]
    row["reasons"] = [str(r) for r in d.detail.get("reasons", [])][:5]
    return row


def _figure(name: str, value: Any) -> dict[str, Any] | None:
    """One before/after row: the benchmark median, the watched metric's mean, or the error rate per minute."""
    if not isinstance(value, dict):
        return None
    pairs = {
        "benchmark": ("before_median", "after_median", "s (median)"),
        "telemetry": ("before_mean", "after_mean", "(mean)"),
        "errors": ("per_minute_before", "per_minute_after", "errors/min"),
    }
    if name not in pairs or pairs[name][0] not in value:
        note = value.get("note") or value.get("error") or value.get("status")
        return {"name": name, "note": str(note)} if note else None
    before, after = value[pairs[name][0]], value[pairs[name][1]]
    label = f"{value.get('metric', name)} {pairs[name][2]}"
    change = None
    if isinstance(before, (int, float)) and isinstance(after, (int, float)) and before:
        change = round(100 * (after - before) / abs(before), 1)
    return {"name": label, "before": before, "after": after, "change_percent": change}


def _charts(svc: Services, tenant: str) -> list[dict[str, Any]]:
    """The last hour of the local sampler's main series (one line per series, e.g. per GPU), thinned."""
    end = svc.clock()
    out = []
    for chart in CHARTS:
        lines: list[dict[str, Any]] = []
        for series in svc.telemetry.series(tenant, name=chart.name, start=end - CHART_SECONDS, end=end):
            if series.key.source != "local" or len(lines) >= MAX_CHART_LINES:
                continue
            pairs = list(zip(series.timestamps, series.values, strict=True))
            step = max(1, len(pairs) // MAX_CHART_POINTS)
            extra = {k: v for k, v in series.key.dimensions if k != "host"}
            lines.append(
                {
                    "label": " ".join(f"{k} {v}" for k, v in sorted(extra.items())) or chart.label,
                    "points": [[round(t, 3), round(v, 3)] for t, v in pairs[::step]][-MAX_CHART_POINTS:],
                }
            )
        if lines:
            out.append({"name": chart.name, "label": chart.label, "unit": chart.unit, "top": chart.top, "lines": lines})
    return out
