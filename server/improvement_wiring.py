"""Wiring of the improvement cycle to telemetry (``generators`` and ``telemetry`` do not import each other): the
learning engine's opportunities as the cycle's (``generators.improvement.Opportunity``), the telemetry store's figures
for the verdict, and critical alarms turned into emergency cycles."""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Sequence
from typing import Protocol

from generators.improvement import Opportunity
from generators.improvement.cycle import Emergency
from telemetry.learning.engine import LearningEngine, component_of
from telemetry.learning.live.pattern_watch import ERRORS_METRIC
from telemetry.learning.logpatterns.miner import is_error
from telemetry.learning.trends import direction_for
from telemetry.store.records import EventRecord, TelemetryStore

logger = logging.getLogger(__name__)
MAX_LOGS_JUDGED = 50_000  # per window; beyond it the error rate is not judged


class LearningOpportunities:
    """:class:`generators.improvement.OpportunitySource` over the learning engine."""

    def __init__(self, learning: LearningEngine, own_insights: Callable[[], Collection[str]] = frozenset) -> None:
        """``own_insights`` gives the ids of the insights the server's self-analysis made (its own components)."""
        self._learning = learning
        self._own_insights = own_insights

    def __call__(self, tenant: str, window_hours: float, component: str | None) -> list[Opportunity]:
        """Every opportunity, whatever its severity: the cycle judges the risk of a change by its blast radius."""
        analysis = self._learning.analyze(tenant, window_hours=window_hours, risk_tolerance="high")
        summaries = {i.id: i.summary for i in analysis.insights}
        own = self._own_insights()
        opportunities = []
        for o in analysis.opportunities:
            if component is not None and o.component != component:
                continue
            evidence = "; ".join(summaries[i] for i in o.insight_ids if i in summaries)[:1000]
            direction = direction_for(o.metric)
            opportunities.append(
                Opportunity(
                    o.component, o.metric, o.goal, o.impact_score, o.risk,
                    direction="up_is_bad" if direction == "neutral" else direction,
                    evidence=evidence, insight_ids=tuple(o.insight_ids),
                    own_code=bool(o.insight_ids) and all(i in own for i in o.insight_ids),
                    kind="errors" if o.metric == ERRORS_METRIC else "metric",
                )
            )  # fmt: skip
        return opportunities


class CallFigures(Protocol):
    """A metric's figures call by call for a component's generated tools (``None``: not such a metric or component).
    Blocking."""

    def __call__(self, tenant: str, component: str, metric: str, start: float, end: float) -> list[float] | None: ...


class TelemetryFigures:
    """:class:`generators.improvement.MetricFigures` over the telemetry store, and over the recorded calls of a
    generated tool (``calls``) for the self-analysis' metrics of its calls."""

    def __init__(self, store: TelemetryStore, calls: CallFigures | None = None) -> None:
        self._store = store
        self._calls = calls

    def metric_mean(self, tenant: str, component: str, metric: str, start: float, end: float) -> tuple[float, int]:
        values = self.metric_values(tenant, component, metric, start, end)
        return (sum(values) / len(values) if values else 0.0), len(values)

    def metric_values(self, tenant: str, component: str, metric: str, start: float, end: float) -> list[float]:
        """The points themselves, oldest first (the verdict's rank test needs them, not only a mean)."""
        by_call = self._calls(tenant, component, metric, start, end) if self._calls is not None else None
        if by_call is not None:
            return by_call
        points = [
            pair
            for series in self._store.series(tenant, name=metric, start=start, end=end)
            if component_of(dict(series.key.dimensions)) == component
            for pair in zip(series.timestamps, series.values, strict=True)
        ]
        return [value for _, value in sorted(points)]

    def error_count(self, tenant: str, component: str, start: float, end: float) -> int | None:
        logs = self._store.logs(tenant, start=start, end=end, limit=MAX_LOGS_JUDGED + 1)
        if len(logs) > MAX_LOGS_JUDGED:  # a count of part of the window would skew the rate
            return None
        return sum(1 for r in logs if r.component == component and is_error(r.message, r.level))


def alarm_listener(
    critical: Collection[str], request: Callable[[Emergency], None]
) -> Callable[[Sequence[EventRecord]], None]:
    """A store-events listener: an alarm on the ``critical`` list entering ALARM, with a Component dimension, asks
    for an emergency cycle. A name matches exactly or as its last ``-``/``_``/``.`` separated part (e.g.
    ``checkout-HighErrorRate`` matches ``HighErrorRate``)."""
    names = frozenset(critical)

    def on_events(events: Sequence[EventRecord]) -> None:
        for event in events:
            # Only CloudWatch's word counts: an agent with the ingest role must not be able to start code changes.
            if (
                event.source != "cloudwatch"
                or event.type != "alarm_state_change"
                or event.detail.get("state") != "ALARM"
            ):
                continue
            alarm = str(event.detail.get("alarm", ""))
            if not _critical(alarm, names):
                continue
            component = event.detail.get("component")
            if not component:
                logger.warning("critical alarm %s has no Component dimension: no emergency cycle", alarm)
                continue
            metric = event.detail.get("metric")
            request(
                Emergency(event.tenant, str(component), alarm, str(event.detail.get("reason", ""))[:500],
                          str(metric) if metric else None)
            )  # fmt: skip

    return on_events


def _critical(alarm: str, names: frozenset[str]) -> bool:
    return alarm in names or any(sep in alarm and alarm.rsplit(sep, 1)[1] in names for sep in ("-", "_", "."))
