"""Benchmark of call_with_retry: prints milliseconds for 15 calls that answer at once and 2 that fail once (default
delay; lower is better)."""

import itertools
import sys
import time

from components.retry_policy import call_with_retry

tries = itertools.count()


def answer() -> int:
    """A call that answers at once."""
    return 1


def failing_once() -> int:
    """A call that fails on every other try."""
    if next(tries) % 2 == 0:
        raise ConnectionError("reset")
    return 1


started = time.perf_counter()
for _ in range(15):
    call_with_retry(answer)
for _ in range(2):
    call_with_retry(failing_once)
sys.stdout.write(f"{(time.perf_counter() - started) * 1000:.3f}\n")
