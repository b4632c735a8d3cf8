"""Is the new code measurably better than the old? A rank test on two samples, pure Python and deterministic.

The method: the Hodges-Lehmann estimate of the shift (the median of every pairwise difference new - old) with its
distribution-free confidence interval from the exact Mann-Whitney U distribution (Moses' interval: the k-th smallest
and k-th largest pairwise differences, k read off the U distribution). Why this one:

* benchmark timings are skewed and have outliers (a busy machine, a page fault): a rank method is not thrown by one
  slow run, where a t-test would be;
* it is exact for the small samples a benchmark gives (5 to 20 runs a side), with no random resampling, so the same
  samples always give the same verdict (a bootstrap would need a seed and thousands of resamples, and is unreliable
  below about ten values a side);
* it gives an effect size with an interval, not only a p-value, so the rule can ask "better by more than the
  smallest effect that counts" rather than "different at all", and the figures can say by how much.

The interval is in the samples' unit and reported as a percentage of the old median. Each one-sided claim ("better by
more than ``min_effect_percent``", "worse") holds with ``confidence``, so the two-sided interval's level is
``1 - 2 * alpha`` with ``alpha = 1 - confidence``. When runs are added until the interval can tell (``plan``), alpha
is split evenly between the looks (Bonferroni), so the confidence holds for the whole sequence, not just one look.
Ties (a benchmark that prints a count, not a time) are allowed: the interval then stays valid, if a little
conservative. Beyond ``EXACT_MAX_PAIRS`` pairs the U distribution is replaced by its normal approximation, and a side
longer than ``MAX_SAMPLES`` is thinned evenly (telemetry can hold thousands of points).
"""

from __future__ import annotations

import functools
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

METHOD = "Hodges-Lehmann shift, exact Mann-Whitney interval"
EXACT_MAX_PAIRS = 2_500
MAX_SAMPLES = 400
Decision = Literal["better", "worse", "no_improvement"]
# What the caller needs to know: "improve" (is it better by the smallest effect?) or "not_worse" (only a slowdown
# counts, e.g. the benchmark of an error fix).
Goal = Literal["improve", "not_worse"]


@dataclass(frozen=True, slots=True)
class Shift:
    """New against old: the estimated shift and its interval, in the samples' unit (``None``: too few samples for
    the interval's level)."""

    before_median: float
    after_median: float
    estimate: float
    low: float | None
    high: float | None
    level: float  # of the two-sided interval
    n_before: int
    n_after: int

    def percent(self, value: float | None) -> float | None:
        """``value`` as a percentage of the old median (``None`` when the old median is 0 or there is no value)."""
        base = abs(self.before_median)
        if value is None or base == 0:
            return None
        return 100.0 * value / base

    @property
    def change_percent(self) -> float | None:
        """The estimated change in % of the old median (positive: the figure rose)."""
        if self.estimate == 0:
            return 0.0
        return self.percent(self.estimate)

    @property
    def interval_percent(self) -> tuple[float, float] | None:
        low, high = self.percent(self.low), self.percent(self.high)
        if self.low == self.high == 0:
            return 0.0, 0.0
        return None if low is None or high is None else (low, high)

    def figures(self, decision: Decision, confidence: float, looks: int) -> dict[str, Any]:
        """As shown: the effect (the estimated change in %, negative: the figure fell), its interval, the confidence
        of a claim of better or worse, the runs or points per side, and the decision."""
        interval = self.interval_percent
        return {
            "decision": decision,
            "effect_percent": None if self.change_percent is None else round(self.change_percent, 2),
            "interval_percent": None if interval is None else [round(interval[0], 2), round(interval[1], 2)],
            "interval_level": round(self.level, 4),
            "confidence": confidence,
            "runs": min(self.n_before, self.n_after),
            "looks": looks,
            "method": METHOD,
        }


@dataclass(frozen=True, slots=True)
class Rule:
    """How a shift is judged."""

    lower_is_better: bool = True
    min_effect_percent: float = 5.0  # better only by more than this, with confidence
    regression_percent: float = 10.0  # a significant change worse than this is worse even inside the smallest effect
    confidence: float = 0.95  # of each one-sided claim, over all looks


def plan(runs: int, max_runs: int) -> list[int]:
    """Sample sizes per side at each look: ``runs``, then doubled, up to ``max_runs`` (e.g. 5, 10, 20)."""
    sizes = [max(1, runs)]
    while sizes[-1] < max_runs:
        sizes.append(min(max_runs, sizes[-1] * 2))
    return sizes


def shift(before: Sequence[float], after: Sequence[float], level: float) -> Shift:
    """The Hodges-Lehmann shift of ``after`` against ``before`` with its two-sided interval at ``level``."""
    if not before or not after:
        raise ValueError("both samples need at least one value")
    old, new = _thin(before), _thin(after)
    differences = sorted(b - a for a in old for b in new)
    k = _rank(len(old), len(new), (1.0 - level) / 2)
    low, high = (differences[k - 1], differences[-k]) if k >= 1 else (None, None)
    return Shift(
        statistics.median(before),
        statistics.median(after),
        statistics.median(differences),
        low,
        high,
        level,
        len(before),
        len(after),
    )


def interval_level(confidence: float, looks: int = 1) -> float:
    """The two-sided level that gives each one-sided claim ``confidence`` over ``looks`` looks."""
    alpha = (1.0 - confidence) / max(1, looks)
    return 1.0 - 2.0 * alpha


def judge(s: Shift, rule: Rule, *, goal: Goal = "improve", final: bool = True) -> Decision | None:
    """better, worse, no_improvement, or ``None`` when more samples could still tell (only before the ``final`` look).

    * better: the whole interval is better than the old figure by more than ``min_effect_percent``;
    * worse: the whole interval is worse by more than ``min_effect_percent``, or it is worse at all and the estimate
      beyond ``regression_percent`` (at the last look, with too few samples for any interval, the estimate alone);
    * no_improvement: otherwise, once the interval rules out the answer the ``goal`` asks about, or at the last look.
    """
    change = s.change_percent
    if change is None:  # the old median is 0: no relative change can be measured, whatever the samples
        return "no_improvement"
    sign = -1.0 if rule.lower_is_better else 1.0
    gain = sign * change
    interval = s.interval_percent
    low, high = (-math.inf, math.inf) if interval is None else sorted((sign * interval[0], sign * interval[1]))
    effect = rule.min_effect_percent
    if low > effect:
        return "better"
    beyond_limit = -gain > rule.regression_percent and (high < 0 or (final and interval is None))
    if high < -effect or beyond_limit:
        return "worse"
    could_tell = low <= effect < high if goal == "improve" else low < -effect <= high
    return None if could_tell and not final else "no_improvement"


def describe(s: Shift, words: tuple[str, str] = ("lower", "higher")) -> str:
    """One line of figures: the change (``words`` for down and up) with its interval, the medians, the sample sizes."""
    change, interval = s.change_percent, s.interval_percent
    if change is None:
        what = "no relative change can be measured (the old median is 0)"
    else:
        what = f"{abs(change):.1f}% {words[0] if change < 0 else words[1]}" if change else "no change"
        what += (
            f", {s.level:.1%} interval {interval[0]:+.1f}% to {interval[1]:+.1f}%"
            if interval is not None
            else ", too few values for an interval at this confidence"
        )
    return f"{what}; median {s.before_median:.4g} -> {s.after_median:.4g}; {s.n_before} before and {s.n_after} after"


def u_cdf(m: int, n: int, u: int) -> float:
    """P(U <= u) for the Mann-Whitney U of samples of ``m`` and ``n`` values with no ties (exact)."""
    counts = _u_counts(min(m, n), max(m, n))
    if u < 0:
        return 0.0
    return sum(counts[: u + 1]) / math.comb(m + n, m)


def _rank(m: int, n: int, alpha: float) -> int:
    """The largest k with P(U <= k - 1) <= alpha (0: no interval at this level)."""
    pairs = m * n
    if pairs > EXACT_MAX_PAIRS:
        sd = math.sqrt(pairs * (m + n + 1) / 12.0)
        u = math.floor(pairs / 2.0 - 0.5 + sd * statistics.NormalDist().inv_cdf(alpha))
        return max(0, min(u + 1, (pairs + 1) // 2))
    counts = _u_counts(min(m, n), max(m, n))
    total, cumulative, k = math.comb(m + n, m), 0, 0
    limit = alpha * total
    for count in counts[: (pairs + 1) // 2]:
        cumulative += count
        if cumulative > limit:
            break
        k += 1
    return k


@functools.lru_cache(maxsize=128)
def _u_counts(m: int, n: int) -> tuple[int, ...]:
    """How many orderings of m + n values give U = 0, 1, ..., m*n: the coefficients of the Gaussian binomial
    [m+n choose m]_q = prod_{i=1..m} (1 - q^(n+i)) / (1 - q^i)."""
    poly = [1]
    for i in range(1, m + 1):
        grown = poly + [0] * (n + i)
        for degree, coefficient in enumerate(poly):  # times (1 - q^(n+i))
            grown[degree + n + i] -= coefficient
        for degree in range(i, len(grown)):  # divided by (1 - q^i), exactly
            grown[degree] += grown[degree - i]
        poly = grown[: i * n + 1]
    return tuple(poly)


def _thin(values: Sequence[float]) -> list[float]:
    """At most MAX_SAMPLES values, evenly spread over the sequence (which keeps its time order)."""
    step = math.ceil(len(values) / MAX_SAMPLES)
    return list(values[::step])
