"""Process-wide tuning the server applies when it runs (``self-building-mcp serve``), and benchmarks mirror."""

from __future__ import annotations

import gc

# The cyclic collector's first generation runs every 700 allocations by default: an ingest of 10,000 items makes
# tens of thousands, so it would run dozens of times per call over a heap of long-lived state (detectors, miners).
# Reference counting frees almost everything here; the collector only needs to run now and then.
GC_GEN0_THRESHOLD = 10_000


def tune_process() -> None:
    """Apply the server's process settings (idempotent)."""
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GC_GEN0_THRESHOLD, gen1, gen2)
