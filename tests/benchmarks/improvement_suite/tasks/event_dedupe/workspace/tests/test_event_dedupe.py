"""Tests of dedupe."""

from components.event_dedupe import dedupe


def test_keeps_first_seen_order() -> None:
    """Repeats are dropped; the first delivery of each id keeps its place."""
    assert dedupe(["b", "a", "b", "c", "a"]) == ["b", "a", "c"]


def test_no_repeats_and_empty() -> None:
    """Unique input comes back unchanged; no input, no output."""
    assert dedupe(["x", "y"]) == ["x", "y"]
    assert dedupe([]) == []
