"""Many series: one :class:`SeriesDetector` per key, bounded by least-recently-updated eviction."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from typing import Any

from telemetry.anomaly.config import DetectorConfig
from telemetry.anomaly.detector import Detection, SeriesDetector


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
        series = self._series
        det = series.get(key)
        if det is None:
            det = SeriesDetector(self.config)
            series[key] = det
            if len(series) > self.max_series:
                old, _ = series.popitem(last=False)
                self._last_ts.pop(old, None)
                self.evicted += 1
        else:
            last = self._last_ts.get(key)
            if last is not None and timestamp <= last:
                return None
            series.move_to_end(key)
        self._last_ts[key] = timestamp
        return det.update(timestamp, value)

    def feed(self, key: Hashable, points: list[tuple[float, float]]) -> list[tuple[float, float, Detection]]:
        """Feed several points of one series (oldest first); returns ``(timestamp, value, verdict)`` of those
        reported as anomalies. Cheaper than :meth:`update` per point: the series is looked up once.
        """
        series = self._series
        det = series.get(key)
        if det is None:
            det = SeriesDetector(self.config)
            series[key] = det
            if len(series) > self.max_series:
                old, _ = series.popitem(last=False)
                self._last_ts.pop(old, None)
                self.evicted += 1
            last = float("-inf")
        else:
            series.move_to_end(key)
            last = self._last_ts.get(key, float("-inf"))
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

    def detector(self, key: Hashable) -> SeriesDetector | None:
        """The detector of one series, or None when it is not tracked."""
        return self._series.get(key)

    def count(self, key: Hashable) -> int:
        """Points consumed for ``key`` (0 when unknown)."""
        det = self._series.get(key)
        return det.count if det is not None else 0

    def state_dict(self, key: Hashable) -> dict[str, Any] | None:
        """The snapshot of one series' detector, or None when it is not tracked."""
        det = self._series.get(key)
        return det.state_dict() if det is not None else None
