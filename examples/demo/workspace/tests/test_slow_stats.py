"""Tests of percentile."""

import pytest
from components.slow_stats import percentile


def test_nearest_rank() -> None:
    """Nearest rank: the smallest value with at least q percent of values at or below it."""
    values = [15.0, 20.0, 35.0, 40.0, 50.0]
    assert percentile(values, 30) == 20.0
    assert percentile(values, 40) == 20.0
    assert percentile(values, 50) == 35.0
    assert percentile(values, 100) == 50.0
    assert percentile(values, 0) == 15.0


def test_unsorted_input_and_duplicates() -> None:
    """Order and repeats of the input do not matter."""
    assert percentile([3.0, 1.0, 2.0, 2.0], 50) == 2.0


def test_bad_input() -> None:
    """No values or q outside 0-100 is an error."""
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 101)
