"""Benchmark of percentile: prints milliseconds for the p95 of 3,000 latencies (lower is better)."""

import random
import time

from components.slow_stats import percentile

rng = random.Random(7)
values = [rng.random() * 1000 for _ in range(3000)]
started = time.perf_counter()
percentile(values, 95)
print(f"{(time.perf_counter() - started) * 1000:.3f}")
