"""The learning engine: turns stored telemetry into insights and ranked improvement opportunities.

Each series is judged on the history it has in the window, not on the window's length: its newest quarter (from its
own first to its newest point there) is compared with the rest, its baseline, and needs at least 5 baseline and
3 recent points. So an hour of history reads the same in a 24-hour window as in a 1-hour one, and a level shift
there is a degradation (severity: :func:`.insights.severity_for_shift`), not a slow trend over an empty day.
"""

from __future__ import annotations

import functools
import math
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from telemetry.learning.insights import (
    Insight,
    InsightSummary,
    Opportunity,
    Risk,
    allowed,
    bad_share,
    insight_id,
    performance_gain,
    rank_key,
    risk_for,
    severity_for_shift,
)
from telemetry.learning.trends import Direction, degradation_of, direction_for, trend_of
from telemetry.store.records import SeriesStats, TelemetryStore, split_time

MIN_Z = 3.0
MIN_CHANGE_PERCENT = 10.0
MIN_TREND_PERCENT = 20.0
MAX_REMEMBERED = 10_000  # metric directions kept between analyses
RECENT_SHARE = 0.25  # each series' newest quarter of the history it has in the window is compared with the rest


class WindowAnalyser(Protocol):
    """Extra findings over one tenant's window: the anomalies the streaming detector recorded, the error patterns
    of the logs. Returns the insights and how many log records were read for them.
    """

    def __call__(self, tenant: str, start: float, end: float, metric_name: str | None) -> tuple[list[Insight], int]: ...


@dataclass(frozen=True, slots=True)
class SeriesFindings:
    """What the per-series part of an analysis found. Small and picklable: it may come from another process."""

    insights: list[Insight]
    series: int  # series analysed
    per_component: dict[tuple[str, str], int]  # (component, metric) -> how many of those series it has


class SeriesAnalysis(Protocol):
    """The per-series part of an analysis of one tenant's window (:meth:`LearningEngine.series_findings`, here or
    in the analysis process)."""

    def __call__(self, tenant: str, start: float, end: float, metric_name: str | None) -> SeriesFindings: ...


@dataclass(frozen=True, slots=True)
class Analysis:
    insights: list[Insight]
    opportunities: list[Opportunity]
    summary: InsightSummary


def component_of(dimensions: dict[str, str]) -> str | None:
    for key in ("Component", "component", "Service", "service"):
        if key in dimensions:
            return dimensions[key]
    return None


def _bad_bounds(mean: float, std: float, direction: Direction) -> tuple[float, float]:
    """Values outside these are bad: beyond the baseline by 3 standard deviations in the bad direction."""
    limit = 3 * max(std, 0.01 * abs(mean), 1e-9)
    return (-math.inf, mean + limit) if direction == "up_is_bad" else (mean - limit, math.inf)


class LearningEngine:
    """Analyses one tenant's window of telemetry on demand. Blocking: run it in a worker thread."""

    def __init__(
        self,
        store: TelemetryStore,
        *,
        analysers: list[WindowAnalyser] | None = None,
        clock: Callable[[], float],
        series: SeriesAnalysis | None = None,
    ) -> None:
        """``series``: where the per-series part runs (default: :meth:`series_findings`, in this thread)."""
        self._store = store
        self._analysers = analysers or []
        self._clock = clock
        self._series: SeriesAnalysis = series or self.series_findings
        # a metric's direction, remembered: four regular expressions per series and analysis otherwise
        self._direction = functools.lru_cache(maxsize=MAX_REMEMBERED)(direction_for)

    def analyze(
        self, tenant: str, *, window_hours: float, metric_name: str | None = None, risk_tolerance: Risk = "high"
    ) -> Analysis:
        end = self._clock()
        start = end - window_hours * 3600
        found = self._series(tenant, start, end, metric_name)
        insights = list(found.insights)
        logs_read = 0
        for analyser in self._analysers:
            extra, read = analyser(tenant, start, end, metric_name)
            insights += extra
            logs_read += read
        opportunities = [
            o for o in self._opportunities(insights, found.per_component) if allowed(o.risk, risk_tolerance)
        ]
        opportunities.sort(key=lambda o: o.impact_score, reverse=True)
        insights.sort(key=rank_key)
        summary = InsightSummary(
            total=len(insights),
            by_kind=dict(Counter(i.kind for i in insights)),
            by_severity=dict(Counter(i.severity for i in insights)),
            series_analysed=found.series,
            logs_analysed=logs_read,
        )
        return Analysis(insights, opportunities, summary)

    def series_findings(self, tenant: str, start: float, end: float, metric_name: str | None) -> SeriesFindings:
        """Degradations and trends of each of the tenant's series in [start, end], and how many series each
        component has."""
        all_stats = self._store.series_stats(tenant, name=metric_name, start=start, end=end, recent_share=RECENT_SHARE)
        insights: list[Insight] = []
        per_component: Counter[tuple[str, str]] = Counter()
        for stats in all_stats:
            if stats.count:
                insights += self._series_insights(tenant, stats, end)
            component = component_of(dict(stats.key.dimensions))
            if component is not None:
                per_component[(component, stats.key.name)] += 1
        return SeriesFindings(insights, len(all_stats), dict(per_component))

    def _series_insights(self, tenant: str, stats: SeriesStats, end: float) -> list[Insight]:
        key = stats.key
        dims = dict(key.dimensions)
        direction = self._direction(key.name, key.unit)
        subject = f"{key.name}|{key.dimensions}"
        base = {
            "tenant": tenant,
            "metric": key.name,
            "dimensions": dims,
            "component": component_of(dims),
            "source": key.source,
        }
        recent_start = split_time(stats.time_origin, stats.last_timestamp, RECENT_SHARE)  # where the store split it
        found = degradation_of(stats, direction=direction)
        if found is not None and found.worse and abs(found.z_score) >= MIN_Z and abs(found.change_percent) >= 10:
            low, high = _bad_bounds(found.baseline_mean, found.baseline_std, direction)
            outside = self._store.count_outside(key, start=recent_start, end=end, low=low, high=high)
            bad = 100.0 * outside / stats.recent.count
            # Against a zero baseline there is no percentage: change_percent is null and the summary says so.
            percent = round(found.change_percent, 2) if math.isfinite(found.change_percent) else None
            how = (
                f"{percent:+.0f}% against its baseline" if percent is not None
                else "from a baseline of zero" if not found.baseline_mean else "far beyond its baseline"
            )  # fmt: skip
            return [
                Insight(
                    id=insight_id("degradation", tenant, subject),
                    kind="degradation",
                    severity=severity_for_shift(found.change_percent, found.z_score),
                    summary=f"{key.name} worsened {how} "
                    f"({found.baseline_mean:.4g} → {found.recent_mean:.4g}, {found.z_score:+.1f} σ)",
                    evidence={
                        "baseline_mean": round(found.baseline_mean, 6),
                        "baseline_std": round(found.baseline_std, 6),
                        "recent_mean": round(found.recent_mean, 6),
                        "change_percent": percent,
                        "z_score": round(found.z_score, 2),
                        "bad_share_percent": round(bad, 1),
                        "direction": direction,
                        "baseline_from": stats.time_origin,
                        "recent_from": recent_start,
                    },
                    detected_at=stats.last_timestamp,
                    **base,
                )
            ]
        slope = trend_of(stats)
        if slope is None or direction == "neutral":
            return []
        rising_badly = direction == "up_is_bad" and slope.relative_change_percent >= MIN_TREND_PERCENT
        falling_badly = direction == "down_is_bad" and slope.relative_change_percent <= -MIN_TREND_PERCENT
        if not (rising_badly or falling_badly):
            return []
        return [
            Insight(
                id=insight_id("trend", tenant, subject),
                kind="trend",
                severity="medium" if abs(slope.relative_change_percent) >= 50 else "low",
                summary=f"{key.name} is trending the wrong way: {slope.relative_change_percent:+.0f}% over the window",
                evidence={
                    "slope_per_hour": round(slope.slope_per_hour, 6),
                    "relative_change_percent": round(slope.relative_change_percent, 2),
                    "short_average": round(slope.short_average, 6),
                    "long_average": round(slope.long_average, 6),
                    "points": slope.points,
                    "direction": direction,
                },
                detected_at=stats.last_timestamp,
                **base,
            )
        ]

    @staticmethod
    def _opportunities(insights: list[Insight], series_per_component: dict[tuple[str, str], int]) -> list[Opportunity]:
        grouped: dict[tuple[str, str], list[Insight]] = defaultdict(list)
        for insight in insights:
            if insight.evidence.get("worse") == 0.0:  # an anomaly in the good direction: nothing to fix
                continue
            if insight.component is not None and insight.metric is not None:
                grouped[(insight.component, insight.metric)].append(insight)
        out: list[Opportunity] = []
        for (component, metric), group in grouped.items():
            gain = max(performance_gain(i) for i in group)
            users = (
                100.0
                * len({tuple(sorted(i.dimensions.items())) for i in group})
                / max(1, series_per_component.get((component, metric), 0))
            )
            frequency = max(bad_share(i) for i in group)
            direction = str(group[0].evidence.get("direction", "up_is_bad"))
            way = {"up_is_bad": "down ", "down_is_bad": "up "}.get(direction, "")
            goal = f"bring {metric} back {way}to its baseline"
            out.append(
                Opportunity(
                    component=component,
                    metric=metric,
                    goal=goal,
                    impact_score=round(gain * users * frequency / 100, 2),
                    performance_gain=round(gain, 2),
                    affected_users=round(users, 2),
                    frequency=round(frequency, 2),
                    risk=risk_for(group),
                    insight_ids=[i.id for i in group],
                )
            )
        return out
