"""Benchmark of LatencyWindow.add: prints milliseconds for 10,000 latencies into a window of 5,000 (lower is
better)."""

import sys
import time

from components.latency_window import LatencyWindow

window = LatencyWindow(5000)
started = time.perf_counter()
for index in range(10_000):
    window.add(float(index % 300))
sys.stdout.write(f"{(time.perf_counter() - started) * 1000:.3f}\n")
