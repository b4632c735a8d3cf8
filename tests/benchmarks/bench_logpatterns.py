"""Log-pattern miner throughput: lines/s of ``LogPatternMiner.add`` over the 8 loghub 2k datasets (target >= 20,000).

Each dataset's message contents are read first; only the ``add`` calls are timed, one fresh miner per dataset.
Run: python -m tests.benchmarks.bench_logpatterns [DATA_ROOT] (default /work/shared/data/loghub).
"""

from __future__ import annotations

import csv
import sys
import time
from pathlib import Path

from telemetry.logpatterns import LogPatternMiner

DATA_ROOT = Path("/work/shared/data/loghub")
DATASETS = ("Android", "Apache", "HDFS", "Hadoop", "OpenSSH", "Spark", "Windows", "Zookeeper")
ROUNDS = 3


def load(root: Path, name: str) -> list[str]:
    with (root / name / f"{name}_2k.log_structured.csv").open(encoding="utf-8", errors="replace", newline="") as f:
        return [row["Content"] for row in csv.DictReader(f)]


def lines_per_second(lines: list[str]) -> float:
    """Best of a few rounds, each on a fresh miner, so that a busy machine disturbs the figure less."""
    best = float("inf")
    for _ in range(ROUNDS):
        miner = LogPatternMiner()
        started = time.perf_counter()
        for line in lines:
            miner.add(line)
        best = min(best, time.perf_counter() - started)
    return len(lines) / best


def main(root: Path = DATA_ROOT) -> None:
    total_lines = 0
    total_seconds = 0.0
    for name in DATASETS:
        lines = load(root, name)
        rate = lines_per_second(lines)
        total_lines += len(lines)
        total_seconds += len(lines) / rate
        sys.stdout.write(f"log patterns {name:10s} {rate:10,.0f} lines/s\n")
    sys.stdout.write(f"log patterns overall    {total_lines / total_seconds:10,.0f} lines/s over {total_lines} lines\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else DATA_ROOT)
