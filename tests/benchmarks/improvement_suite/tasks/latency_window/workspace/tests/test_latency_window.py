"""Tests of the latency window."""

import pytest
from components.latency_window import LatencyWindow


def test_keeps_the_latest_values_oldest_first() -> None:
    """Once full, each new latency pushes the oldest out."""
    window = LatencyWindow(3)
    for value in (1.0, 2.0, 3.0, 4.0, 5.0):
        window.add(value)
    assert window.values() == [3.0, 4.0, 5.0]
    assert len(window) == 3
    assert window.mean() == 4.0


def test_empty_window_and_copies() -> None:
    """An empty window has mean 0; changing the returned list does not change the window."""
    window = LatencyWindow(2)
    assert window.mean() == 0.0 and len(window) == 0
    window.add(7.0)
    window.values().append(99.0)
    assert window.values() == [7.0]


def test_size_must_be_positive() -> None:
    """A window holds at least one latency."""
    with pytest.raises(ValueError):
        LatencyWindow(0)
