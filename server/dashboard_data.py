"""What the browser dashboard shows, assembled from the services for one caller (roles and tenants as the tools check
them: the request's caller is set before these run)."""

from __future__ import annotations

import time
from typing import Any, get_args

import anyio.to_thread

from generators.deploy import Deployment
from telemetry.learning import Analysis
from telemetry.thresholds import EventType
from tools.access import authorize
from tools.deployments import summary, visible_list
from tools.services import Services
from tools.status import build_status

CHART_SECONDS = 3600
MAX_CHART_POINTS = 240  # per series: the newest hour, thinned evenly
MAX_EVENTS = 50
MAX_DEPLOYMENTS = 20
MAX_INSIGHTS = 10
INSIGHTS_TTL_SECONDS = 30.0  # the analysis is the costly part: shared by every refresh within this window
CHARTS: tuple[tuple[str, str], ...] = (
    ("host.cpu.percent", "CPU %"),
    ("host.memory.percent", "Memory %"),
    ("gpu.utilization.percent", "GPU %"),
    ("gpu.memory.percent", "GPU memory %"),
)
EVENT_TYPES: tuple[str, ...] = get_args(EventType)


class InsightCache:
    """The newest analysis per tenant, kept for :data:`INSIGHTS_TTL_SECONDS`."""

    def __init__(self) -> None:
        self._kept: dict[str, tuple[float, Analysis]] = {}

    async def get(self, svc: Services, tenant: str) -> Analysis:
        now = time.monotonic()
        kept = self._kept.get(tenant)
        if kept is not None and now - kept[0] < INSIGHTS_TTL_SECONDS:
            return kept[1]
        analysis = await anyio.to_thread.run_sync(lambda: svc.learning.analyze(tenant, window_hours=24))
        self._kept = {t: v for t, v in self._kept.items() if now - v[0] < INSIGHTS_TTL_SECONDS}
        self._kept[tenant] = (now, analysis)
        return analysis


async def dashboard_state(svc: Services, insights: InsightCache, tenant: str, event_type: str | None) -> dict[str, Any]:
    """Everything one refresh of the page needs, as JSON-ready data."""
    caller = authorize("read", tenant)
    status = await build_status(svc)
    events = await svc.monitor.store.query(event_type=event_type, limit=MAX_EVENTS)
    analysis = await insights.get(svc, tenant)
    rows, more = await anyio.to_thread.run_sync(visible_list, svc, caller, None, MAX_DEPLOYMENTS)
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
    for name, label in CHARTS:
        lines = []
        for series in svc.telemetry.series(tenant, name=name, start=end - CHART_SECONDS, end=end):
            if series.key.source != "local":
                continue
            pairs = list(zip(series.timestamps, series.values, strict=True))
            step = max(1, len(pairs) // MAX_CHART_POINTS)
            extra = {k: v for k, v in series.key.dimensions if k != "host"}
            lines.append(
                {
                    "label": " ".join(f"{k} {v}" for k, v in sorted(extra.items())) or label,
                    "points": [[round(t, 3), round(v, 3)] for t, v in pairs[::step]][-MAX_CHART_POINTS:],
                }
            )
        if lines:
            out.append({"name": name, "label": label, "lines": lines})
    return out
