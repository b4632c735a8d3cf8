"""Anomaly detector throughput and memory: points/s of ``SeriesDetector.update`` and bytes held per series.

Measured on the 28 NAB files (when present) and on a synthetic 500,000-point series with a daily cycle, so the
seasonal signal is exercised. Best of a few rounds, each on a fresh detector. Memory is what one detector holds
once its windows are full (traced allocations, Python objects included), with and without a daily cycle.
Run: python -m tests.benchmarks.bench_anomaly [NAB_ROOT] (default /work/shared/data/nab).
"""

from __future__ import annotations

import csv
import math
import random
import sys
import time
import tracemalloc
from pathlib import Path

from telemetry.learning.anomaly import SeriesDetector, parse_timestamp

NAB_ROOT = Path("/work/shared/data/nab")
ROUNDS = 3


def synthetic(n: int = 500_000) -> list[tuple[float, float]]:
    rng = random.Random(0)
    return [(i * 300.0, 50 + 20 * math.sin(2 * math.pi * i / 288) + rng.gauss(0, 2)) for i in range(n)]


def nab_series(root: Path) -> list[list[tuple[float, float]]]:
    series = []
    for path in sorted(root.glob("*/*.csv")):
        with path.open(newline="") as handle:
            series.append([(parse_timestamp(r["timestamp"]), float(r["value"])) for r in csv.DictReader(handle)])
    return series


def points_per_second(all_series: list[list[tuple[float, float]]]) -> float:
    best = float("inf")
    total = sum(len(s) for s in all_series)
    for _ in range(ROUNDS):
        started = time.perf_counter()
        for points in all_series:
            update = SeriesDetector().update
            for ts, value in points:
                update(ts, value)
        best = min(best, time.perf_counter() - started)
    return total / best


def bytes_per_series(points: list[tuple[float, float]]) -> int:
    """Allocated bytes one detector still holds after ``points`` (its windows full by then)."""
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    det = SeriesDetector()
    for ts, value in points:
        det.update(ts, value)
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    held = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    del det
    return held


def main(root: Path = NAB_ROOT) -> None:
    if root.is_dir():
        series = nab_series(root)
        total = sum(len(s) for s in series)
        rate = points_per_second(series)
        label = f"NAB ({len(series)} files, {total:,} points)"
        print(f"anomaly detector, {label}: {rate:,.0f} points/s (target >= 100,000)")
    rate = points_per_second([synthetic()])
    print(f"anomaly detector, synthetic daily cycle (500,000 points): {rate:,.0f} points/s (target >= 100,000)")
    cycle = synthetic(20_000)
    flat = [(i * 10.0, 50.0 + (i * 7919 % 101) / 50.0) for i in range(20_000)]  # 10 s points: no daily cycle
    print(f"anomaly detector memory per series, daily cycle learned: {bytes_per_series(cycle) / 1024:,.1f} KiB")
    print(f"anomaly detector memory per series, no daily cycle: {bytes_per_series(flat) / 1024:,.1f} KiB")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else NAB_ROOT)
