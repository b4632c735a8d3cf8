"""Many series: one :class:`SeriesDetector` per key, bounded by least-recently-updated eviction."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable

from telemetry.learning.anomaly.config import DetectorConfig
from telemetry.learning.anomaly.detector import Detection, SeriesDetector


class AnomalyDetector:
    """Online detectors for every live series, all with the one shared configuration.

    At most ``max_series`` detectors are kept; when a new series arrives beyond that, the one updated longest ago
    is dropped (and starts afresh, with a new warm-up, should it come back). Points older than the last one seen
    for their series are ignored: a decision at time t uses only points up to t.
    """

    def __init__(self, config: DetectorConfig | None = None, max_series: int = 10_000) -> None:
        if max_series < 1:
            raise ValueError("max_series must be at least 1")
        self.config = config or DetectorConfig()
        self.max_series = max_series
        self._series: OrderedDict[Hashable, SeriesDetector] = OrderedDict()
        self._last_ts: dict[Hashable, float] = {}
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._series)

    def __contains__(self, key: object) -> bool:
        return key in self._series

    def update(self, key: Hashable, timestamp: float, value: float) -> Detection | None:
        """Feed one point of series ``key``; None when the point is out of order (already past it)."""
        det, last = self._slot(key)
        if timestamp <= last:
            return None
        self._last_ts[key] = timestamp
        return det.update(timestamp, value)

    def feed(self, key: Hashable, points: list[tuple[float, float]]) -> list[tuple[float, float, Detection]]:
        """Feed several points of one series (oldest first); returns ``(timestamp, value, verdict)`` of those
        reported as anomalies. Cheaper than :meth:`update` per point: the series is looked up once.
        """
        det, last = self._slot(key)
        update = det.update
        found: list[tuple[float, float, Detection]] = []
        for ts, value in points:
            if ts <= last:
                continue
            last = ts
            verdict = update(ts, value)
            if verdict.anomaly:
                found.append((ts, value, verdict))
        if last != float("-inf"):
            self._last_ts[key] = last
        return found

    def _slot(self, key: Hashable) -> tuple[SeriesDetector, float]:
        """The series' detector (created, evicting the least recently updated beyond the bound, or marked as just
        used) and the timestamp of its last point (-inf for a new one)."""
        series = self._series
        det = series.get(key)
        if det is not None:
            series.move_to_end(key)
            return det, self._last_ts.get(key, float("-inf"))
        det = series[key] = SeriesDetector(self.config)
        if len(series) > self.max_series:
            old, _ = series.popitem(last=False)
            self._last_ts.pop(old, None)
            self.evicted += 1
        return det, float("-inf")

    def detector(self, key: Hashable) -> SeriesDetector | None:
        """The detector of one series, or None when it is not tracked."""
        return self._series.get(key)

    def count(self, key: Hashable) -> int:
        """Points consumed for ``key`` (0 when unknown)."""
        det = self._series.get(key)
        return det.count if det is not None else 0
