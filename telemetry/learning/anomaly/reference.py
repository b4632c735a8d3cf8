"""Sliding reference statistics of one signal: recent quantiles plus long-memory extremes, refreshed in blocks."""

from __future__ import annotations

from collections import deque
from itertools import islice
from typing import Any

_INF = float("inf")


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
        self.recent: deque[float] = deque(maxlen=window)
        self.ordered: list[float] = []  # ``recent`` kept sorted by whoever appends to it, for the quantiles
        self.blocks_hi: deque[float] = deque(maxlen=max(1, memory_blocks))
        self.blocks_lo: deque[float] = deque(maxlen=max(1, memory_blocks))
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
        last = list(islice(reversed(recent), block))
        self.blocks_hi.append(max(last))
        self.blocks_lo.append(min(last))
        self.hi = max(self.blocks_hi)
        self.lo = min(self.blocks_lo)
        n = len(recent)
        if n < self.min_count:
            return
        if not quantiles:
            top, bottom = max(recent), min(recent)
            self.q_lo, self.q_hi = bottom, top
            self.median = sum(recent) / n  # the mean stands in for the typical value here
            self.spread = top - bottom if top > bottom else abs(top) * 0.01 + 1e-9
            self.ready = True
            return
        ordered = self.ordered if len(self.ordered) == n else sorted(recent)
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
        self.ordered = sorted(self.recent)
        self.blocks_hi.extend(float(x) for x in state["blocks_hi"])
        self.blocks_lo.extend(float(x) for x in state["blocks_lo"])
        self.hi, self.lo = float(state["hi"]), float(state["lo"])
        self.q_lo, self.q_hi, self.median = float(state["q_lo"]), float(state["q_hi"]), float(state["median"])
        self.spread, self.ready = float(state["spread"]), bool(state["ready"])
