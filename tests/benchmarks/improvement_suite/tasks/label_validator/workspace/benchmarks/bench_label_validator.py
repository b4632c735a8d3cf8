"""Benchmark of invalid_labels: prints milliseconds for 2,000 labels, a few long ones with a bad last character
(lower is better)."""

import random
import string
import sys
import time

from components.label_validator import invalid_labels

rng = random.Random(7)
labels = ["-".join(rng.choice(["api", "web", "db", "v2", "eu"]) for _ in range(3)) for _ in range(2000)]
for index in range(0, 2000, 500):
    labels[index] = "".join(rng.choice(string.ascii_lowercase) for _ in range(19)) + "_"
started = time.perf_counter()
invalid_labels(labels)
sys.stdout.write(f"{(time.perf_counter() - started) * 1000:.3f}\n")
