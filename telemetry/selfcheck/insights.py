"""The server's self-analysis on demand and on a schedule, and its findings as learning-engine insights.

:class:`SelfAnalyst` analyses the recorded tool calls (:mod:`.calls`). Every ``interval`` it analyses the
last day (or the interval, if longer) over every tenant, logs one line and keeps the report; as a
:class:`telemetry.learning.engine.WindowAnalyser` it returns that report's anomalies as insights, so opportunities
rank them and an improvement cycle can target the code behind the tool: for a built-in tool, insights of one tenant
about the server module behind it (the server's own components); for a tool the server generated for a tenant
(``owners``), insights of that tenant about its component, whose calls also give the cycle's verdict its figures
(:meth:`SelfAnalyst.call_values`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Final

import anyio
import anyio.to_thread

from telemetry.clock import Clock, SystemClock, sleep
from telemetry.learning.insights import Insight, InsightKind, insight_id
from telemetry.selfcheck.calls import CallRecorder
from telemetry.selfcheck.models import Anomaly, AnomalyKind, SelfReport, ToolOwner

if TYPE_CHECKING:
    from telemetry.selfcheck.analysis import SelfAnalysisConfig

logger = logging.getLogger(__name__)
MAX_CALLS_ANALYSED: Final = 200_000  # the newest calls of a window beyond this are analysed, the report says so
PERIODIC_WINDOW_HOURS: Final = 24.0
FIRST_RUN_DELAY_SECONDS: Final = 10.0
LATENCY_METRIC: Final = "tool_latency_p95_ms"
ERROR_RATE_METRIC: Final = "tool_error_rate_percent"
_INSIGHT: dict[AnomalyKind, tuple[InsightKind, str]] = {
    "failing_tool": ("error_pattern", ERROR_RATE_METRIC),
    "error_rate_increase": ("degradation", ERROR_RATE_METRIC),
    "slow_tool": ("anomaly", LATENCY_METRIC),
    "latency_regression": ("degradation", LATENCY_METRIC),
}


class SelfAnalyst:
    """Analyses the server's own tool calls; keeps the latest periodic report for the learning engine."""

    def __init__(
        self,
        recorder: CallRecorder,
        *,
        tenant: str,
        interval_seconds: float,
        clock: Clock | None = None,
        components: Callable[[], Mapping[str, str]] = dict,
        config: SelfAnalysisConfig | None = None,
    ) -> None:
        self.recorder = recorder
        self.tenant = tenant
        self.interval_seconds = interval_seconds
        self.clock = clock or SystemClock()
        self.components = components
        self.config = config  # None: the defaults
        self.latest: SelfReport | None = None
        # The tools the server generated, by tool name (set once they are opened: they are opened after the analyst).
        self.owners: Callable[[], Mapping[str, ToolOwner]] = dict

    def analyse(
        self,
        lookback_hours: float,
        *,
        tenants: list[str] | None = None,
        caller_label: Callable[[str], str] | None = None,
    ) -> SelfReport:
        """The report over the last ``lookback_hours`` (of ``tenants`` only, when given). Blocking."""
        end = self.clock()
        start = end - lookback_hours * 3600
        calls, total = self.recorder.calls(start=start, end=end, tenants=tenants, limit=MAX_CALLS_ANALYSED)
        from telemetry.selfcheck.analysis import (  # loaded on first use, not at start-up
            SelfAnalysisConfig,
            analyse_calls,
        )

        components = {**self.components(), **{tool: owner.component for tool, owner in self.owners().items()}}
        return analyse_calls(
            calls, start=start, end=end, calls_in_window=total, tenants=tenants, components=components,
            caller_label=caller_label, config=self.config or SelfAnalysisConfig(),
        )  # fmt: skip

    def run_once(self) -> SelfReport:
        """One periodic analysis: every tenant, the last day (or interval). Blocking."""
        report = self.analyse(max(PERIODIC_WINDOW_HOURS, self.interval_seconds / 3600))
        self.latest = report
        top = report.suggestions[0] if report.suggestions else None
        logger.info(
            "self-analysis: %d tool calls in %.0f h, %d errors, %d anomalies, %d suggestions%s",
            report.calls_in_window, report.lookback_hours, report.failure_patterns.total_errors,
            len(report.anomalies), len(report.suggestions), f"; top ({top.priority}): {top.action}" if top else "",
        )  # fmt: skip
        return report

    async def run(self) -> None:
        """Analyse shortly after start-up (not while the server is still answering its first requests) and then every
        ``interval_seconds`` until cancelled; failures are logged, not raised."""
        await sleep(self.clock, min(FIRST_RUN_DELAY_SECONDS, self.interval_seconds))
        while True:
            try:
                await anyio.to_thread.run_sync(self.run_once)
            except Exception:
                logger.exception("self-analysis failed (retried next interval)")
            await sleep(self.clock, self.interval_seconds)

    def insight_ids(self) -> frozenset[str]:
        """Ids of the insights the latest report gives the learning engine about the server's own code: what marks an
        opportunity as the server's own (pushed telemetry can carry any dimension, never these ids). A generated
        tool's findings are its tenant's, not the server's."""
        report = self.latest
        if report is None:
            return frozenset()
        owners = self.owners()
        return frozenset(
            insight_of(a, self.tenant, report.window_end).id
            for a in report.anomalies
            if a.tool not in owners and _points_at_code(a)
        )

    def insights(self, tenant: str, start: float, end: float, metric_name: str | None) -> tuple[list[Insight], int]:
        """The latest periodic report's anomalies that point at code (slow tools, and tools whose failures are mostly
        crashes: callers' bad arguments or missing roles are no reason to change the code) as insights (a
        ``WindowAnalyser``): those of the server's own tools for the configured tenant, with the server module behind
        the tool as their component; those of a generated tool for its owner tenant, with its component."""
        report = self.latest
        if report is None or not start <= report.window_end <= end:
            return [], 0
        owners = self.owners()
        found = []
        for anomaly in report.anomalies:
            owner = owners.get(anomaly.tool)
            if not _points_at_code(anomaly) or (owner.tenant if owner else self.tenant) != tenant:
                continue
            if owner is not None and not owner.served:  # a removed tool: nothing left to improve
                continue
            found.append(insight_of(anomaly, tenant, report.window_end, owner.component if owner else None))
        return [i for i in found if metric_name is None or i.metric == metric_name], 0

    def call_values(self, tenant: str, component: str, metric: str, start: float, end: float) -> list[float] | None:
        """The figures of ``metric`` call by call for the tools generated as ``component`` of ``tenant`` in [start,
        end], oldest first: each call's duration in ms for the latency, 0 or 100 (failed) for the error rate. ``None``
        when ``metric`` is not one of those or ``component`` is no generated tool. Blocking."""
        if metric not in (LATENCY_METRIC, ERROR_RATE_METRIC):
            return None
        tools = {
            tool for tool, owner in self.owners().items() if (owner.tenant, owner.component) == (tenant, component)
        }
        if not tools:
            return None
        calls, _ = self.recorder.calls(start=start, end=end, tenants=[tenant], limit=MAX_CALLS_ANALYSED)
        mine = [c for c in calls if c.tool in tools]
        if metric == LATENCY_METRIC:
            return [1000 * c.duration for c in mine]
        return [0.0 if c.outcome == "ok" else 100.0 for c in mine]


def _points_at_code(anomaly: Anomaly) -> bool:
    share = anomaly.evidence.get("server_error_share_percent")
    return share is None or (isinstance(share, (int, float)) and share >= 50)


def insight_of(anomaly: Anomaly, tenant: str, detected_at: float, component: str | None = None) -> Insight:
    """One anomaly of a tool as an insight about its component: ``component``, else the anomaly's (the server's
    module and function behind the tool)."""
    kind, metric = _INSIGHT[anomaly.kind]
    return Insight(
        id=insight_id(f"self_{anomaly.kind}", tenant, anomaly.tool),
        kind=kind,
        severity=anomaly.severity,
        tenant=tenant,
        metric=metric,
        dimensions={"tool": anomaly.tool, "source": "self_analysis"},
        component=component or anomaly.component,
        summary=f"server self-analysis: {anomaly.summary}",
        evidence={**anomaly.evidence, "anomaly": anomaly.kind, "direction": "up_is_bad"},
        detected_at=detected_at,
    )
