"""Benchmark of word_counts: prints milliseconds for 20,000 words of 300 kinds (lower is better)."""

import random
import time

from components.word_index import word_counts

rng = random.Random(7)
text = " ".join(f"word{rng.randrange(300)}" for _ in range(20_000))
started = time.perf_counter()
word_counts(text)
print(f"{(time.perf_counter() - started) * 1000:.3f}")
