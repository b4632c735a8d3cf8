"""Trends and degradation of a series: moving averages, and a recent window against its baseline.

Direction-aware: for latency, errors or utilisation a rise is the bad direction; for throughput or success rates
a fall is. The direction comes from the metric's name and unit (overridable by the caller).

Each comes twice: from a series' points (:func:`trend`, :func:`degradation`) and from the aggregates a store computes
next to the data (:func:`trend_of`, :func:`degradation_of`), which is what the learning engine uses on large stores.
Both end in the same arithmetic.
"""

from __future__ import annotations

import bisect
import math
import re
from dataclasses import dataclass
from statistics import fmean, pstdev
from typing import Literal

from telemetry.store.records import Moments, SeriesStats

Direction = Literal["up_is_bad", "down_is_bad", "neutral"]

# Checked in this order: a "request latency" is a latency, an "error count" an error, before anything else.
_FIRST_UP_IS_BAD = re.compile(r"latency|duration|delay|error|fault|fail|exception|5xx|4xx|timeout", re.IGNORECASE)
_UP_IS_BAD = re.compile(
    r"time|cpu|memory|mem|disk|swap|load|queue|backlog|throttl|retry|retries|drop|reject|temperature|temp|lag|wait",
    re.IGNORECASE,
)
_DOWN_IS_BAD = re.compile(
    r"throughput|rps|qps|tps|requests|success|availability|uptime|hit_?rate|free|available|bandwidth|count_ok|"
    r"healthy",
    re.IGNORECASE,
)

# A rate of work done (bytes, packets or operations a second) measures how busy something is, not how well it does:
# neither way is worse ("disk.read_bytes_per_s" is not a disk filling up). Errors and requests were matched above.
_ACTIVITY_RATE = re.compile(
    r"(?:bytes|bits|packets|ops|reads|writes)[_.]?(?:per[_.]?s(?:ec(?:ond)?)?|/s)\b|\biops\b", re.IGNORECASE
)
_ACTIVITY_UNIT = re.compile(r"[a-z]*(?:bytes|bits)/second", re.IGNORECASE)


def direction_for(name: str, unit: str | None = None) -> Direction:
    """Which way is worse for a metric, judged from its name (and unit)."""
    if _FIRST_UP_IS_BAD.search(name):
        return "up_is_bad"
    if _DOWN_IS_BAD.search(name):
        return "down_is_bad"
    if _ACTIVITY_RATE.search(name) or _ACTIVITY_UNIT.fullmatch(unit or ""):
        return "neutral"
    if _UP_IS_BAD.search(name) or (unit or "").lower() in ("milliseconds", "seconds", "microseconds"):
        return "up_is_bad"
    return "neutral"


@dataclass(frozen=True, slots=True)
class Trend:
    """Least-squares slope and moving averages over a window."""

    slope_per_hour: float
    relative_change_percent: float
    short_average: float
    long_average: float
    points: int


@dataclass(frozen=True, slots=True)
class Degradation:
    """A recent window compared with its baseline."""

    baseline_mean: float
    baseline_std: float
    recent_mean: float
    change_percent: float
    z_score: float
    worse: bool
    direction: Direction


def trend(timestamps: list[float], values: list[float], short: int = 12) -> Trend | None:
    """Slope (per hour) and moving averages; None with fewer than 3 points."""
    n = len(values)
    if n < 3:
        return None
    t0 = timestamps[0]
    xs = [(t - t0) / 3600.0 for t in timestamps]
    mx, my = fmean(xs), fmean(values)
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, values, strict=True)) / sxx if sxx > 0 else 0.0
    return _trend(slope, xs[-1] - xs[0], my, fmean(values[-short:]), n)


def trend_of(stats: SeriesStats) -> Trend | None:
    """:func:`trend` from a store's aggregates (``short`` is the store's ``tail``)."""
    whole = stats.baseline + stats.recent
    n = whole.count
    if n < 3:
        return None
    mx = whole.sum_x / n
    sxx = whole.sum_xx - mx * whole.sum_x
    sxy = whole.sum_xy - mx * whole.sum_y
    slope = 3600.0 * sxy / sxx if sxx > 0 else 0.0  # x is in seconds, the slope per hour
    span = (stats.last_timestamp - stats.time_origin) / 3600.0
    return _trend(slope, span, stats.value_origin + whole.sum_y / n, stats.tail_mean, n)


def _trend(slope: float, span_hours: float, mean: float, short_average: float, points: int) -> Trend:
    relative = 100.0 * slope * span_hours / abs(mean) if mean else 0.0
    return Trend(slope, relative, short_average, mean, points)


def degradation(
    timestamps: list[float],
    values: list[float],
    *,
    recent_start: float,
    direction: Direction,
    min_points: int = 5,
) -> Degradation | None:
    """Compare points at or after ``recent_start`` with those before it; None without enough of either."""
    split = bisect.bisect_left(timestamps, recent_start)
    baseline, recent = values[:split], values[split:]
    if len(baseline) < min_points or len(recent) < min(min_points, 3):
        return None
    return _degradation(fmean(baseline), pstdev(baseline), fmean(recent), direction)


def degradation_of(stats: SeriesStats, *, direction: Direction, min_points: int = 5) -> Degradation | None:
    """:func:`degradation` from a store's aggregates, split where the store was asked to split."""
    baseline, recent = stats.baseline, stats.recent
    if baseline.count < min_points or recent.count < min(min_points, 3):
        return None
    base_mean = stats.value_origin + baseline.sum_y / baseline.count
    recent_mean = stats.value_origin + recent.sum_y / recent.count
    return _degradation(base_mean, math.sqrt(_variance(baseline)), recent_mean, direction)


def _variance(moments: Moments) -> float:
    # Rounding can leave a constant series' sum of squared deviations a hair below zero.
    return max(0.0, moments.sum_yy - moments.sum_y * moments.sum_y / moments.count) / moments.count


def _degradation(base_mean: float, base_std: float, recent_mean: float, direction: Direction) -> Degradation:
    delta = recent_mean - base_mean
    # A flat baseline has no spread: measure against 1 % of its level so a real step still counts, a tiny one not.
    spread = max(base_std, 0.01 * abs(base_mean), 1e-9)
    z = delta / spread
    change = 100.0 * delta / abs(base_mean) if base_mean else (math.inf if delta else 0.0)
    worse = (direction == "up_is_bad" and delta > 0) or (direction == "down_is_bad" and delta < 0)
    return Degradation(base_mean, base_std, recent_mean, change, z, worse, direction)
