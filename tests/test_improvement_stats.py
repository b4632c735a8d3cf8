"""The statistical verdict on its own: the exact Mann-Whitney distribution, the Hodges-Lehmann interval and the rule
that turns it into better / worse / no measurable improvement, with fixed samples and generated ones."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from generators.measure import stats
from generators.measure.stats import Rule, describe, interval_level, judge, plan, shift, u_cdf

RULE = Rule(lower_is_better=True, min_effect_percent=5.0, regression_percent=10.0, confidence=0.95)
LEVEL = interval_level(0.95, looks=3)  # a benchmark of 5, 10, 20 runs a side
OLD = [100.0, 103.0, 98.0, 101.0, 99.5]


def brute_u_counts(m: int, n: int) -> list[int]:
    """U for every placement of m values among m + n (no ties), counted by enumeration."""
    counts = [0] * (m * n + 1)
    for chosen in itertools.combinations(range(m + n), m):
        picked = set(chosen)
        seen, u = 0, 0
        for position in range(m + n):
            if position in picked:
                seen += 1
            else:
                u += seen
        counts[u] += 1
    return counts


@given(st.integers(1, 7), st.integers(1, 7))
def test_the_exact_u_distribution_matches_enumeration(m: int, n: int) -> None:
    brute = brute_u_counts(m, n)
    total = math.comb(m + n, m)
    assert [round(u_cdf(m, n, u) * total) for u in range(m * n + 1)] == list(itertools.accumulate(brute))
    assert u_cdf(m, n, -1) == 0.0 and u_cdf(m, n, m * n) == pytest.approx(1.0)


def test_the_interval_ranks_match_published_critical_values() -> None:
    """Two-sided 95 %: the Mann-Whitney critical values (U <= c rejects) are 2 for 5/5, 10 for 7/8 and 23 for
    10/10; the interval's k is c + 1. Below 4 values a side no 95 % interval exists."""
    assert stats._rank(5, 5, 0.025) == 3
    assert stats._rank(7, 8, 0.025) == 11
    assert stats._rank(10, 10, 0.025) == 24
    assert stats._rank(3, 3, 0.025) == 0


def test_the_normal_approximation_agrees_with_the_exact_ranks(monkeypatch: pytest.MonkeyPatch) -> None:
    exact = [stats._rank(m, n, 0.025) for m, n in ((30, 30), (40, 60))]
    monkeypatch.setattr(stats, "EXACT_MAX_PAIRS", 0)
    approximate = [stats._rank(m, n, 0.025) for m, n in ((30, 30), (40, 60))]
    assert all(abs(a - e) <= 1 for a, e in zip(approximate, exact, strict=True)), (approximate, exact)


samples = st.lists(st.floats(1.0, 1000.0, allow_nan=False), min_size=4, max_size=12)


@settings(max_examples=60)
@given(samples, st.floats(-50.0, 50.0))
def test_a_pure_shift_is_estimated_exactly_and_inside_its_interval(before: list[float], delta: float) -> None:
    after = [v + delta for v in reversed(before)]
    found = shift(before, after, 0.9)
    assert found.estimate == pytest.approx(delta, abs=1e-9)
    assert found.low is not None and found.high is not None
    assert found.low <= found.estimate + 1e-9 and found.estimate - 1e-9 <= found.high


@settings(max_examples=60)
@given(samples, samples)
def test_swapping_the_sides_mirrors_the_estimate_and_interval(before: list[float], after: list[float]) -> None:
    forward, backward = shift(before, after, 0.9), shift(after, before, 0.9)
    assert forward.estimate == pytest.approx(-backward.estimate)
    assert (forward.low is None) is (backward.low is None)
    if forward.low is not None and backward.high is not None:
        assert forward.low == pytest.approx(-backward.high)


@settings(max_examples=60)
@given(samples)
def test_identical_code_is_never_better_nor_worse(before: list[float]) -> None:
    """The same figures on both sides (a change that does nothing, measured without noise)."""
    assert judge(shift(before, list(before), LEVEL), RULE, final=True) == "no_improvement"


def test_clearly_faster_is_better_with_the_figures() -> None:
    new = [v / 10 for v in OLD]
    found = shift(OLD, new, LEVEL)
    assert judge(found, RULE, final=False) == "better"
    assert found.change_percent == pytest.approx(-90.0, abs=0.5)
    interval = found.interval_percent
    assert interval is not None and interval[1] < -85
    text = describe(found, ("faster", "slower"))
    assert text.startswith("90.0% faster, 96.7% interval -") and "5 before and 5 after" in text


def test_clearly_slower_is_worse_and_so_is_higher_for_a_metric_where_higher_is_better() -> None:
    assert judge(shift(OLD, [v * 1.3 for v in OLD], LEVEL), RULE, final=False) == "worse"
    throughput = Rule(lower_is_better=False)
    assert judge(shift(OLD, [v * 0.7 for v in OLD], LEVEL), throughput, final=False) == "worse"
    assert judge(shift(OLD, [v * 1.3 for v in OLD], LEVEL), throughput, final=False) == "better"


def test_overlapping_samples_ask_for_more_runs_then_end_as_no_measurable_improvement() -> None:
    new = [96.0, 104.0, 92.0, 99.0, 101.0]  # maybe a little faster, maybe not
    found = shift(OLD, new, LEVEL)
    assert judge(found, RULE, final=False) is None
    assert judge(found, RULE, final=True) == "no_improvement"


def test_a_small_real_gain_below_the_smallest_effect_is_no_improvement() -> None:
    """2 % faster, measured very precisely: real, but less than the 5 % that counts; no more runs needed."""
    old = [100.0 + i / 100 for i in range(20)]
    new = [v * 0.98 for v in old]
    assert judge(shift(old, new, interval_level(0.95)), RULE, final=False) == "no_improvement"


def test_too_few_runs_for_any_interval_wait_for_more_and_then_only_a_big_slowdown_counts() -> None:
    found = shift([10.0, 11.0, 12.0], [1.0, 1.1, 1.2], LEVEL)  # 3 a side: no interval at this level
    assert found.low is None and found.interval_percent is None
    assert judge(found, RULE, final=False) is None
    assert judge(found, RULE, final=True) == "no_improvement", "better always needs confidence"
    slower = shift([10.0, 11.0, 12.0], [20.0, 21.0, 22.0], LEVEL)
    assert judge(slower, RULE, final=True) == "worse", "at the last look the estimate beyond the limit counts"


def test_an_old_median_of_zero_cannot_show_a_relative_change() -> None:
    found = shift([0.0] * 5, [1.0] * 5, LEVEL)
    assert found.change_percent is None and judge(found, RULE, final=False) == "no_improvement"
    assert "no relative change" in describe(found)


def test_ties_only_give_a_zero_interval() -> None:
    found = shift([7.0] * 6, [7.0] * 6, LEVEL)
    assert (found.estimate, found.low, found.high) == (0.0, 0.0, 0.0) and found.interval_percent == (0.0, 0.0)


def test_the_plan_doubles_up_to_the_most_runs_and_alpha_is_split_between_looks() -> None:
    assert plan(5, 20) == [5, 10, 20] and plan(3, 20) == [3, 6, 12, 20] and plan(20, 20) == [20]
    assert plan(8, 5) == [8]
    assert interval_level(0.95) == pytest.approx(0.90)
    assert interval_level(0.95, looks=3) == pytest.approx(1 - 0.1 / 3)


def test_long_samples_are_thinned_evenly_and_still_judged() -> None:
    old = [100.0 + (i % 7) for i in range(3000)]
    new = [v * 0.5 for v in old]
    found = shift(old, new, 0.9)
    assert (found.n_before, found.n_after) == (3000, 3000)
    assert judge(found, RULE) == "better"
