"""Sliding reference statistics of one signal: recent quantiles plus long-memory extremes, refreshed in blocks.

The windows hold machine floats (:class:`FloatRing`, arrays of doubles), not Python float objects: a live series
keeps three windows of 1,000 values, 24 KB instead of about 90 KB, which bounds what a server with
``anomaly_max_series`` detectors holds.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Iterator
from typing import Any

_INF = float("inf")


class FloatRing:
    """The last ``maxlen`` floats appended, oldest first, in an array of doubles (a ``deque(maxlen=...)`` of floats
    that stores 8 bytes per value)."""

    __slots__ = ("data", "maxlen", "start")

    def __init__(self, maxlen: int) -> None:
        self.maxlen = maxlen
        self.data = array("d")  # in no order once full: for max, min, or the detector's hot path (inlined there)
        self.start = 0  # where the oldest value is once the ring is full (the next one overwrites it)

    def __len__(self) -> int:
        return len(self.data)

    def __iter__(self) -> Iterator[float]:
        data, start = self.data, self.start
        return iter(data[start:] + data[:start] if start else data)

    def append(self, value: float) -> None:
        data = self.data
        if len(data) < self.maxlen:
            data.append(value)
            return
        start = self.start
        data[start] = value
        self.start = start + 1 if start + 1 < self.maxlen else 0

    def extend(self, values: Iterable[float]) -> None:
        for value in values:
            self.append(value)

    def newest(self, count: int) -> list[float]:
        """The newest ``count`` values, newest first."""
        data = self.data
        end = self.start or len(data)  # one past the newest value
        take = min(count, len(data))
        last = data[end - take : end] if end >= take else data[len(data) - (take - end) :] + data[:end]
        return last.tolist()[::-1]


class Reference:
    """What is normal for one signal, learned from its past values only.

    The detector appends to ``recent`` (and, for the values, keeps ``ordered`` in step) and raises ``hi``/``lo``
    point by point, except for the daily-cycle residual, which is scored against ``hi`` as of the last refresh;
    ``refresh`` (every ``refresh`` points) closes a block, so per-point cost stays flat. ``hi``/``lo`` are the
    extremes over ``memory`` points (kept per block), the quantiles come from the last ``window`` points.
    """

    __slots__ = (
        "blocks_hi",
        "blocks_lo",
        "hi",
        "lo",
        "median",
        "min_count",
        "ordered",
        "q_hi",
        "q_lo",
        "ready",
        "recent",
        "spread",
    )

    def __init__(self, window: int, memory_blocks: int, min_count: int) -> None:
        self.recent = FloatRing(window)
        self.ordered = array("d")  # ``recent`` kept sorted by whoever appends to it, for the quantiles
        self.blocks_hi = FloatRing(max(1, memory_blocks))
        self.blocks_lo = FloatRing(max(1, memory_blocks))
        self.min_count = min_count
        self.hi = -_INF
        self.lo = _INF
        self.q_lo = self.q_hi = self.median = 0.0
        self.spread = 1.0
        self.ready = False

    def refresh(self, block: int, tail: float, quantiles: bool = True) -> None:
        """Close the current block of ``block`` points and recompute the scale.

        With ``quantiles`` the band cuts ``tail`` mass from each end and the median is kept; without, the scale
        is the plain range of the recent window (no sort: cheaper for signals that only need their maximum).
        """
        recent = self.recent
        if not recent:
            return
        last = recent.newest(block)
        self.blocks_hi.append(max(last))
        self.blocks_lo.append(min(last))
        self.hi = max(self.blocks_hi)  # oldest first, as ever (which of two equal zeros wins is kept too)
        self.lo = min(self.blocks_lo)
        n = len(recent)
        if n < self.min_count:
            return
        if not quantiles:
            values, start = recent.data.tolist(), recent.start
            values = values[start:] + values[:start] if start else values  # oldest first, as ever
            top, bottom = max(values), min(values)
            self.q_lo, self.q_hi = bottom, top
            self.median = sum(values) / n  # the mean stands in for the typical value here
            self.spread = top - bottom if top > bottom else abs(top) * 0.01 + 1e-9
            self.ready = True
            return
        ordered: Any = self.ordered if len(self.ordered) == n else sorted(recent)
        k = int(tail * n)
        self.q_lo, self.q_hi, self.median = ordered[k], ordered[n - 1 - k], ordered[n // 2]
        spread = self.q_hi - self.q_lo
        if spread <= 0:
            spread = ordered[-1] - ordered[0]
        if spread <= 0:
            spread = abs(self.hi) * 0.01 + 1e-9
        self.spread = spread
        self.ready = True

    def state_dict(self) -> dict[str, Any]:
        """A JSON-serialisable snapshot."""
        return {
            "recent": list(self.recent),
            "blocks_hi": list(self.blocks_hi),
            "blocks_lo": list(self.blocks_lo),
            "hi": self.hi,
            "lo": self.lo,
            "q_lo": self.q_lo,
            "q_hi": self.q_hi,
            "median": self.median,
            "spread": self.spread,
            "ready": self.ready,
        }

    def load(self, state: dict[str, Any]) -> None:
        """Restore a snapshot taken by :meth:`state_dict` (the sizes come from the configuration)."""
        self.recent.extend(float(x) for x in state["recent"])
        self.ordered = array("d", sorted(self.recent))
        self.blocks_hi.extend(float(x) for x in state["blocks_hi"])
        self.blocks_lo.extend(float(x) for x in state["blocks_lo"])
        self.hi, self.lo = float(state["hi"]), float(state["lo"])
        self.q_lo, self.q_hi, self.median = float(state["q_lo"]), float(state["q_hi"]), float(state["median"])
        self.spread, self.ready = float(state["spread"]), bool(state["ready"])
