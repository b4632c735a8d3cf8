"""Latency statistics. ``percentile`` is deliberately slow (an insertion sort): the demo's improvement target."""

import math


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of ``values`` by the nearest-rank method."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError("q must be between 0 and 100")
    ordered: list[float] = []
    for value in values:
        index = 0
        while index < len(ordered) and ordered[index] < value:
            index += 1
        ordered.insert(index, value)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]
