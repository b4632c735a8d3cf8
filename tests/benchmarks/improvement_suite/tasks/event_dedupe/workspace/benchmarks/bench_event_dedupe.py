"""Benchmark of dedupe: prints milliseconds for 6,000 event ids of which half are repeats (lower is better)."""

import random
import sys
import time

from components.event_dedupe import dedupe

rng = random.Random(7)
ids = [f"evt-{rng.randrange(3000):05d}" for _ in range(6000)]
started = time.perf_counter()
dedupe(ids)
sys.stdout.write(f"{(time.perf_counter() - started) * 1000:.3f}\n")
