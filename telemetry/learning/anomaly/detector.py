"""One series: four cheap streaming signals, each scaled by what the series itself has shown so far.

* spike: the value leaves the range remembered over ``memory`` points (new extremes, first point of a shift), by
  more than one step of the series' resolution (the smallest change seen between two points: on counts, 1);
* level: the running median of the last few points leaves the normal band (level shifts, sustained drifts);
* activity: the running mean of |first difference| exceeds its own remembered maximum (bursts, denser spikes,
  a series that starts oscillating);
* season: when the series has a daily cycle (learned from the sampling interval), the running median of the
  residual against the same time on previous days exceeds its maximum as of the last refresh (missing or changed
  cycles, flatlines where a cycle is expected). Unlike a spike's, that maximum is not raised point by point: a
  cycle that fades out raises the residual a little at each point, and a reference that followed it would never
  be exceeded.

The score is the largest signal over its threshold, squashed to [0, 1]. A detection holds further ones back for
``suppress`` points unless a clearly stronger one comes: one event is reported once, at its start.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left, insort
from collections import deque
from math import isfinite
from typing import Any, NamedTuple

from telemetry.learning.anomaly.config import DetectorConfig
from telemetry.learning.anomaly.reference import Reference

_GAPS_TO_LEARN = 32


class Detection(NamedTuple):
    """The verdict for one point: ``score`` in [0, 1] (0.5 = at threshold) and whether it is reported."""

    score: float
    anomaly: bool


_NOTHING = Detection(0.0, False)


class SeriesDetector:
    """Online anomaly detector for a single metric series; ``update`` sees each point once, in time order."""

    def __init__(self, config: DetectorConfig | None = None) -> None:
        cfg = config or DetectorConfig()
        self.config = cfg
        blocks = max(1, cfg.memory // cfg.refresh)
        self._values = Reference(cfg.quantile_window, blocks, cfg.min_history)
        self._activity = Reference(cfg.quantile_window, blocks, cfg.min_history)
        self._season = Reference(cfg.quantile_window, blocks, cfg.season_min_history)
        self._recent: deque[float] = deque(maxlen=cfg.level_window)
        self._diffs: deque[float] = deque(maxlen=cfg.activity_window)
        self._diff_sum = 0.0
        self._residuals: deque[float] = deque(maxlen=cfg.level_window)
        self._n = 0
        self._prev: float | None = None
        self._prev_t: float | None = None
        self._gaps: list[float] = []
        self._period = 0  # points per seasonal cycle; 0 = not learned yet, -1 = none
        self._lags: list[int] = []
        self._season_start = 0
        self._ring = array("d")
        self._quiet = 0
        self._last = 0.0
        self._step = 0.0  # the smallest change seen between two points (the series' resolution); 0 = none yet

    @property
    def count(self) -> int:
        """Points consumed so far."""
        return self._n

    @property
    def typical(self) -> float:
        """The median of the recent values (as of the last refresh): what the series usually reads."""
        return self._values.median

    def update(self, timestamp: float, value: float) -> Detection:
        """Consume one point (seconds since any epoch, value) and return its verdict.

        A non-finite value is answered with score 0 and leaves the state untouched.
        """
        if not isfinite(value):
            return _NOTHING
        cfg = self.config
        self._n = n = self._n + 1
        if self._period == 0:
            self._learn_period(timestamp)
        if n % cfg.refresh == 0:
            self._refresh()
        raw = self._value_score(value)
        prev = self._prev
        self._prev = value
        if prev is not None:
            step = value - prev if value > prev else prev - value
            if step > 0.0 and (step < self._step or self._step == 0.0):
                self._step = step
            activity = self._activity_score(step)
            if activity > raw:
                raw = activity
        if self._period > 0:
            season = self._seasonal(value)
            if season > raw:
                raw = season
        anomaly = raw > 1.0 and n > cfg.warmup and (self._quiet <= 0 or raw > self._last * cfg.rearm)
        if anomaly:
            self._quiet = cfg.suppress
            self._last = raw
        self._quiet -= 1
        return Detection(raw / (1.0 + raw) if raw > 0.0 else 0.0, anomaly)

    def _value_score(self, value: float) -> float:
        """Spike (beyond the remembered range) and level (running median beyond the band) signals."""
        values = self._values
        recent = self._recent
        recent.append(value)
        raw = 0.0
        if values.ready:
            cfg = self.config
            hi, lo = values.hi, values.lo
            width = hi - lo
            if width < values.spread:
                width = values.spread
            # On discrete values (counts, rounded gauges) a new extreme is at least one step of the series' resolution
            # beyond the old one: that step is the least possible news, not an excess. At most one threshold of it
            # is forgiven: on a series that only jumps (0 or 100), a step the size of the range is no resolution.
            least = width * cfg.spike_threshold
            step = self._step if self._step < least else least
            raw = ((value - hi if value - hi > lo - value else lo - value) - step) / least
            # the running median can only leave the band on a point that is itself outside it
            if value > values.q_hi or value < values.q_lo:
                latest = sorted(recent)
                mid = latest[len(latest) // 2]
                level = max(mid - values.q_hi, values.q_lo - mid) / (values.spread * cfg.level_threshold)
                if level > raw:
                    raw = level
        # The window and its sorted copy move together (two binary searches and a memmove per point, instead of a
        # sort of the whole window at every refresh); inlined, as this is the detector's hottest path.
        window, ordered = values.recent, values.ordered
        data = window.data
        if len(data) == window.maxlen:  # full: the oldest value leaves the sorted copy and makes room in the ring
            start = window.start
            del ordered[bisect_left(ordered, data[start])]
            data[start] = value
            window.start = start + 1 if start + 1 < len(data) else 0
        else:
            data.append(value)
        insort(ordered, value)
        if value > values.hi:
            values.hi = value
        if value < values.lo:
            values.lo = value
        return raw

    def _activity_score(self, step: float) -> float:
        """Running mean of |first difference| beyond its remembered maximum."""
        diffs = self._diffs
        window = self.config.activity_window
        if len(diffs) < window:
            self._diff_sum += step
            diffs.append(step)
            return 0.0
        self._diff_sum += step - diffs[0]
        diffs.append(step)
        mean = self._diff_sum / window
        activity = self._activity
        score = 0.0
        if activity.ready:
            cfg = self.config
            scale = (
                activity.spread
                if activity.spread > activity.hi * cfg.activity_floor
                else activity.hi * cfg.activity_floor
            )
            score = (mean - activity.hi) / (scale * cfg.activity_threshold)
        activity.recent.append(mean)
        if mean > activity.hi:
            activity.hi = mean
        return score

    def _seasonal(self, value: float) -> float:
        """Residual against the median of the same phase in past cycles, as a multiple of its threshold."""
        cfg = self.config
        ring = self._ring
        size = len(ring)
        i = self._n % size
        ring[i] = value
        if self._n <= self._season_start:
            return 0.0
        past = sorted([ring[(i - lag) % size] for lag in self._lags])
        residuals = self._residuals
        expected = past[len(past) // 2]
        residuals.append(value - expected if value > expected else expected - value)
        sustained = min(residuals)  # every recent point is at least this far from its expectation
        season = self._season
        score = 0.0
        if season.ready:
            band = self._values.spread
            if season.median < cfg.season_gate * band:
                scale = season.spread if season.spread > band * cfg.season_floor else band * cfg.season_floor
                score = (sustained - season.hi) / (scale * cfg.season_threshold)
        season.recent.append(sustained)
        return score

    def _learn_period(self, timestamp: float) -> None:
        """Learn the sampling interval from the first gaps, hence the number of points per seasonal cycle."""
        if self._prev_t is not None and timestamp > self._prev_t:
            self._gaps.append(timestamp - self._prev_t)
        self._prev_t = timestamp
        if len(self._gaps) < _GAPS_TO_LEARN:
            return
        cfg = self.config
        gap = sorted(self._gaps)[len(self._gaps) // 2]
        period = round(cfg.season_seconds / gap)
        if cfg.season_min_period <= period <= cfg.season_max_period:
            self._set_period(period)
            self._ring = array("d", bytes(8 * (period * cfg.season_cycles + 1)))
        else:
            self._period = -1
        self._gaps = []

    def _set_period(self, period: int) -> None:
        self._period = period
        cycles = self.config.season_cycles
        self._lags = [period * k for k in range(1, cycles + 1)]
        self._season_start = period * cycles

    def _refresh(self) -> None:
        cfg = self.config
        block, tail = cfg.refresh, cfg.level_tail
        self._values.refresh(block, tail)
        self._activity.refresh(block, 0.0, quantiles=False)
        self._season.refresh(block, 0.0, quantiles=False)
        self._diff_sum = sum(self._diffs)  # no drift from the running sum

    def state_dict(self) -> dict[str, Any]:
        """A JSON-serialisable snapshot of the whole state (restore with :meth:`from_state`)."""
        return {
            "version": 1,
            "config": self.config.model_dump(),
            "n": self._n,
            "prev": self._prev,
            "prev_t": self._prev_t,
            "gaps": list(self._gaps),
            "period": self._period,
            "ring": self._ring.tolist(),
            "quiet": self._quiet,
            "last": self._last,
            "step": self._step,
            "recent": list(self._recent),
            "diffs": list(self._diffs),
            "residuals": list(self._residuals),
            "values": self._values.state_dict(),
            "activity": self._activity.state_dict(),
            "season": self._season.state_dict(),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> SeriesDetector:
        """Rebuild a detector from :meth:`state_dict`; it continues exactly where the snapshot left off."""
        if state.get("version") != 1:
            raise ValueError(f"unsupported detector state version: {state.get('version')!r}")
        det = cls(DetectorConfig.model_validate(state["config"]))
        det._n = int(state["n"])
        det._prev = None if state["prev"] is None else float(state["prev"])
        det._prev_t = None if state["prev_t"] is None else float(state["prev_t"])
        det._gaps = [float(x) for x in state["gaps"]]
        if int(state["period"]) > 0:
            det._set_period(int(state["period"]))
        else:
            det._period = int(state["period"])
        det._ring = array("d", (float(x) for x in state["ring"]))
        det._quiet = int(state["quiet"])
        det._last = float(state["last"])
        det._step = float(state.get("step", 0.0))
        det._recent.extend(float(x) for x in state["recent"])
        det._diffs.extend(float(x) for x in state["diffs"])
        det._diff_sum = sum(det._diffs)
        det._residuals.extend(float(x) for x in state["residuals"])
        det._values.load(state["values"])
        det._activity.load(state["activity"])
        det._season.load(state["season"])
        return det
