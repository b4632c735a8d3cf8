"""Anomalies on live series: the NAB-evaluated detector, one state per series, decisions recorded as events.

A detection is stored as an event (type ``anomaly``, source ``detector``) in the tenant's telemetry, so it survives
restarts, is deduplicated like any event, and is read back by :func:`anomaly_insights` for
``query_telemetry_insights``. Each point is judged after it is stored, from the points of its series before it only.
"""

from __future__ import annotations

import hashlib
import threading
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from telemetry.learning.anomaly import AnomalyDetector, DetectorConfig
from telemetry.learning.engine import component_of
from telemetry.learning.insights import Insight, Severity, insight_id
from telemetry.learning.trends import Direction, direction_for
from telemetry.store.records import EventRecord, MetricPoint, TelemetryStore

ANOMALY_EVENT = "anomaly"
DETECTOR_SOURCE = "detector"
MAX_EVENTS_READ = 5_000

SeriesId = tuple[str, str, tuple[tuple[str, str], ...], str]  # tenant, name, dimensions (sorted), source
SeriesPoints = tuple[SeriesId, str | None, list[tuple[float, float]]]  # a series, its unit, its (timestamp, value)s


def group_points(points: Sequence[MetricPoint]) -> list[SeriesPoints]:
    """``points`` by series, in the order each series first appears (a series' unit: that of its first point)."""
    groups: dict[SeriesId, list[tuple[float, float]]] = defaultdict(list)
    units: dict[SeriesId, str | None] = {}
    for p in points:
        dims = tuple(p.dimensions.items())
        key: SeriesId = (p.tenant, p.name, dims if len(dims) < 2 else tuple(sorted(dims)), p.source)
        groups[key].append((p.timestamp, p.value))
        units.setdefault(key, p.unit)
    return [(key, units[key], pts) for key, pts in groups.items()]


def _severity(score: float, occurrences: int) -> Severity:
    if score >= 0.9 or occurrences >= 10:
        return "high"
    return "medium" if score >= 0.7 or occurrences >= 3 else "low"


class AnomalyWatch:
    """Feeds points to per-series detectors (thread-safe); :func:`anomaly_insights` reads the detections back."""

    def __init__(
        self,
        config: DetectorConfig | None = None,
        *,
        max_series: int = 1_000,
        history: TelemetryStore | None = None,
        prime_points: int = 1_000,
        prime_seconds: float = 7 * 86400,
    ) -> None:
        """With ``history``, a series seen for the first time (after a restart, or an eviction) is primed with its
        stored points from before the new ones (at most ``prime_points``, from the last ``prime_seconds``), so
        that it needs no new warm-up; detections while priming are not reported again.
        """
        self._detectors = AnomalyDetector(config, max_series=max_series)
        self._lock = threading.Lock()
        self._history = history
        self._prime_points = prime_points
        self._prime_seconds = prime_seconds

    @property
    def series_tracked(self) -> int:
        return len(self._detectors)

    def observe(self, points: Sequence[MetricPoint]) -> list[EventRecord]:
        """Judge ``points`` (any order: each series is fed oldest first) and return an event per detection."""
        return self.observe_groups(group_points(points))

    def observe_groups(self, groups: Sequence[SeriesPoints]) -> list[EventRecord]:
        """:meth:`observe` of points already grouped by series (:func:`group_points`)."""
        if not groups:
            return []
        found: list[EventRecord] = []
        with self._lock:
            new = {key: min(pts)[0] for key, _, pts in groups if key not in self._detectors}
            if new and self._history is not None:
                self._prime(new)
            for key, unit, pts in groups:
                pts.sort()
                hits = self._detectors.feed(key, pts)
                if hits:
                    det = self._detectors.detector(key)
                    typical = det.typical if det is not None else float("nan")
                    for ts, value, verdict in hits:
                        found.append(_event(key, unit, ts, value, verdict.score, typical))
        return found

    def _prime(self, first: dict[SeriesId, float]) -> None:
        """Feed new series their stored points from before ``first[key]`` (detections there were reported then): one
        index range read per new series (a brand-new one has none), never the metric's other series."""
        assert self._history is not None
        for key, before in first.items():
            tenant, name, dims, source = key
            start = before - self._prime_seconds
            for series in self._history.series(tenant, name=name, start=start, end=before, dimensions=dict(dims)):
                if series.key.source != source:
                    continue
                past = [(t, v) for t, v in zip(series.timestamps, series.values, strict=True) if t < before]
                self._detectors.feed(key, past[-self._prime_points :])


def anomaly_insights(
    store: TelemetryStore, tenant: str, start: float, end: float, metric_name: str | None
) -> tuple[list[Insight], int]:
    """One insight per series with detections in [start, end] (with the store bound, a ``WindowAnalyser`` for the
    learning engine)."""
    events = store.events(tenant, type=ANOMALY_EVENT, start=start, end=end, limit=MAX_EVENTS_READ)
    grouped: dict[tuple[str, str], list[EventRecord]] = defaultdict(list)
    for event in events:
        if event.source != DETECTOR_SOURCE:  # only the detector's findings: an agent cannot push "anomalies"
            continue
        metric = str(event.detail.get("metric", ""))
        if metric_name is None or metric == metric_name:
            grouped[(metric, str(event.detail.get("series", "")))].append(event)
    hours = max(1.0, (end - start) / 3600)
    out: list[Insight] = []
    for (metric, subject), group in grouped.items():
        latest = max(group, key=lambda e: e.timestamp)
        detail = latest.detail
        dims = {str(k): str(v) for k, v in dict(detail.get("dimensions", {})).items()}
        value, typical = float(detail.get("value", 0.0)), float(detail.get("typical", 0.0))
        change = 100.0 * (value - typical) / abs(typical) if typical else 0.0
        peak = max(float(e.detail.get("score", 0.0)) for e in group)
        direction = direction_for(metric, str(detail.get("unit") or "") or None)
        hours_hit = len({int(e.timestamp // 3600) for e in group})
        out.append(
            Insight(
                id=insight_id("anomaly", tenant, subject),
                kind="anomaly",
                severity=_severity(peak, len(group)),
                tenant=tenant,
                metric=metric,
                dimensions=dims,
                component=component_of(dims),
                source=str(detail["series_source"]) if detail.get("series_source") else None,
                summary=f"{metric}: {len(group)} anomal{'y' if len(group) == 1 else 'ies'} in the window; latest "
                f"{value:.4g} where {typical:.4g} is typical",
                evidence={
                    "occurrences": len(group),
                    "latest_value": round(value, 6),
                    "typical_value": round(typical, 6),
                    "change_percent": round(change, 2),
                    "max_score": round(peak, 4),
                    "first_at": min(e.timestamp for e in group),
                    "last_at": latest.timestamp,
                    "bad_share_percent": round(min(100.0, 100.0 * hours_hit / hours), 2),
                    "direction": direction,
                    # 0 when the move is in the good direction (latency down): no opportunity comes of it
                    "worse": 1.0 if _worse(direction, value, typical) else 0.0,
                },
                detected_at=latest.timestamp,
            )
        )
    return out, 0


def _worse(direction: Direction, value: float, typical: float) -> bool:
    if direction == "up_is_bad":
        return value > typical
    if direction == "down_is_bad":
        return value < typical
    return True  # neutral metrics: any surprise may be a problem


def _event(key: SeriesId, unit: str | None, ts: float, value: float, score: float, typical: float) -> EventRecord:
    tenant, name, dims, source = key
    subject = f"{name}|{dims}|{source}"
    detail: dict[str, Any] = {
        "metric": name,
        "dimensions": dict(dims),
        "unit": unit,
        "series_source": source,
        "series": subject,
        "value": value,
        "typical": typical,
        "score": round(score, 6),
    }
    digest = hashlib.sha256(f"{tenant}|{subject}|{ts!r}".encode()).hexdigest()[:24]
    return EventRecord(tenant, ts, ANOMALY_EVENT, detail, DETECTOR_SOURCE, f"anomaly:{digest}")
