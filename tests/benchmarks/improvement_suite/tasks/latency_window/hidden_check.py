"""Hidden check of latency_window: the latest values, oldest first, and adding to a full window of 5,000 allocates
no copy of it (the largest allocation peak of one add, measured with tracemalloc, stays under 8 KB; a copy of the
window is 40 KB)."""

from __future__ import annotations

import sys
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import checklib

module = checklib.component("latency_window")
small = module.LatencyWindow(4)
for value in range(10):
    small.add(float(value))
checklib.expect_equal(small.values(), [6.0, 7.0, 8.0, 9.0], "values after 10 adds to a window of 4")
checklib.expect_equal(small.mean(), 7.5, "mean")
checklib.expect_equal(len(small), 4, "len")
checklib.expect_equal(module.LatencyWindow(3).mean(), 0.0, "mean of an empty window")
copy = small.values()
copy.clear()
checklib.expect_equal(len(small), 4, "len after clearing the list values() returned")
try:
    module.LatencyWindow(0)
    checklib.expect(False, "LatencyWindow(0) did not raise ValueError")
except ValueError:
    pass

window = module.LatencyWindow(5000)
for value in range(5000):
    window.add(float(value))
tracemalloc.start()
worst = 0
for value in range(50):
    latency = float(value) + 0.5
    tracemalloc.reset_peak()
    before = tracemalloc.get_traced_memory()[0]
    window.add(latency)
    worst = max(worst, tracemalloc.get_traced_memory()[1] - before)
tracemalloc.stop()
checklib.expect(worst < 8192, f"one add to a full window of 5,000 allocated up to {worst} bytes: it copies the window")
checklib.expect_equal(window.values()[-3:], [47.5, 48.5, 49.5], "the newest values of the big window")
checklib.expect_equal(len(window), 5000, "the big window's length")
checklib.finish()
