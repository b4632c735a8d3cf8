"""A :class:`TelemetryStore` that analyses what it stores: the decorator every writer in the server goes through."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Mapping, Sequence

from telemetry.learning.live.anomaly_watch import ANOMALY_EVENT
from telemetry.learning.live.detection_queue import DetectionQueue
from telemetry.learning.live.pattern_watch import PatternWatch
from telemetry.store.records import (
    Dimensions,
    EventRecord,
    LogRecord,
    MetricPoint,
    Series,
    SeriesKey,
    SeriesStats,
    StoreCounts,
    TelemetryStore,
)

logger = logging.getLogger(__name__)


class AnalysingStore:
    """Stores through ``inner``; metric points then go to the anomaly detectors through ``detections`` (which stores
    what they find as events), log lines through the pattern miners. Reads go straight to ``inner``; a read of events
    that may be detections first waits for the batches stored before it to be judged.

    A batch is acknowledged once ``inner`` has stored it; analysis happens after, so a crash in between loses
    at most the analysis of that batch, never the batch.
    """

    def __init__(self, inner: TelemetryStore, detections: DetectionQueue, patterns: PatternWatch) -> None:
        self.inner = inner
        self.detections = detections
        self.patterns = patterns
        self.event_listeners: list[Callable[[Sequence[EventRecord]], None]] = []
        # Told (kind, {(source, tenant): items}) after each stored batch: the server's metrics count them.
        self.stored_listeners: list[Callable[[str, Mapping[tuple[str, str], int]], None]] = []

    def add_metrics(self, points: Sequence[MetricPoint]) -> int:
        written = self.inner.add_metrics(points)
        self._stored("metric", points)
        self.detections.put(points)
        return written

    def settled(self) -> bool:
        """Wait until the detectors judged every batch stored before this call (False, logged: not in time)."""
        if self.detections.settled():
            return True
        logger.warning(
            "the anomaly detectors are behind (%d stored batches wait): a read of anomalies goes on without them",
            self.detections.pending,
        )
        return False

    def add_logs(self, logs: Sequence[LogRecord]) -> int:
        written = self.patterns.ingest(logs, lambda: self.inner.add_logs(logs))
        self._stored("log", logs)
        return written

    def add_events(self, events: Sequence[EventRecord]) -> int:
        """Store, then tell the listeners (critical alarms start emergency cycles); a listener's failure is logged."""
        written = self.inner.add_events(events)
        self._stored("event", events)
        for listener in self.event_listeners:
            try:
                listener(events)
            except Exception:
                logger.exception("an event listener failed")
        return written

    def _stored(self, kind: str, records: Sequence[MetricPoint] | Sequence[LogRecord] | Sequence[EventRecord]) -> None:
        if self.stored_listeners and records:
            tally = Counter((r.source, r.tenant) for r in records)  # one pass, however many listeners
            for listener in self.stored_listeners:
                listener(kind, tally)

    def series(
        self,
        tenant: str,
        *,
        name: str | None = None,
        start: float | None = None,
        end: float | None = None,
        dimensions: Dimensions | None = None,
    ) -> list[Series]:
        return self.inner.series(tenant, name=name, start=start, end=end, dimensions=dimensions)

    def series_stats(
        self,
        tenant: str,
        *,
        name: str | None = None,
        start: float,
        end: float,
        recent_start: float | None = None,
        tail: int = 12,
        recent_share: float | None = None,
    ) -> list[SeriesStats]:
        return self.inner.series_stats(
            tenant, name=name, start=start, end=end, recent_start=recent_start, tail=tail, recent_share=recent_share
        )

    def count_outside(self, key: SeriesKey, *, start: float, end: float, low: float, high: float) -> int:
        return self.inner.count_outside(key, start=start, end=end, low=low, high=high)

    def logs(
        self,
        tenant: str,
        *,
        start: float | None = None,
        end: float | None = None,
        limit: int = 10_000,
        newest: bool = False,
    ) -> list[LogRecord]:
        return self.inner.logs(tenant, start=start, end=end, limit=limit, newest=newest)

    def events(
        self,
        tenant: str,
        *,
        type: str | None = None,
        start: float | None = None,
        end: float | None = None,
        limit: int = 1_000,
    ) -> list[EventRecord]:
        if type in (None, ANOMALY_EVENT):
            self.settled()
        return self.inner.events(tenant, type=type, start=start, end=end, limit=limit)

    def last_timestamp(self, tenant: str, name: str, dimensions: Dimensions) -> float | None:
        return self.inner.last_timestamp(tenant, name, dimensions)

    def prune(self, *, older_than: float) -> int:
        return self.inner.prune(older_than=older_than)

    def counts(self, tenant: str | None = None) -> StoreCounts:
        return self.inner.counts(tenant)

    def close(self) -> None:
        self.inner.close()
