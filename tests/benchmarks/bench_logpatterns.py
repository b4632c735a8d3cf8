"""Log-pattern miner throughput beside drain3's: lines/s over the 8 loghub 2k datasets, in the same run.

Each dataset's message contents are read first; only the ``add`` calls are timed (``add_log_message`` for drain3,
configured as the shared scorer's baseline: similarity 0.4, depth 4, IP/number/hex masks), one fresh miner per
dataset, best of a few rounds, the two miners interleaved so that machine load falls on both alike. The target is a
ratio of at least 1 (drain3 is an optional dev dependency; without it only the miner's figure is printed). Then lines
a hostile client may send (a quote never closed before thousands of blanks; lines that never merge), beside drain3.
Run: python -m tests.benchmarks.bench_logpatterns [DATA_ROOT] (default /work/shared/data/loghub).
"""

from __future__ import annotations

import csv
import logging
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

from telemetry.learning.logpatterns import LogPatternMiner

DATA_ROOT = Path("/work/shared/data/loghub")
DATASETS = ("Android", "Apache", "HDFS", "Hadoop", "OpenSSH", "Spark", "Windows", "Zookeeper")
ROUNDS = 3


def load(root: Path, name: str) -> list[str]:
    with (root / name / f"{name}_2k.log_structured.csv").open(encoding="utf-8", errors="replace", newline="") as f:
        return [row["Content"] for row in csv.DictReader(f)]


def _ours() -> Callable[[str], object]:
    return LogPatternMiner().add


def _drain3() -> Callable[[str], object] | None:
    try:
        from drain3 import TemplateMiner
        from drain3.masking import MaskingInstruction
        from drain3.template_miner_config import TemplateMinerConfig
    except ImportError:
        return None
    config = TemplateMinerConfig()
    config.drain_sim_th = 0.4
    config.drain_depth = 4
    config.masking_instructions = [
        MaskingInstruction(r"((?<=[^A-Za-z0-9])|^)(\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3})((?=[^A-Za-z0-9])|$)", "*"),
        MaskingInstruction(r"((?<=[^A-Za-z0-9])|^)([\-\+]?\d+)((?=[^A-Za-z0-9])|$)", "*"),
        MaskingInstruction(r"((?<=[^A-Za-z0-9])|^)(0x[a-fA-F0-9]+)((?=[^A-Za-z0-9])|$)", "*"),
    ]
    config.mask_prefix, config.mask_suffix = "<", ">"
    return TemplateMiner(config=config).add_log_message


def seconds(make: Callable[[], Callable[[str], object] | None], lines: list[str]) -> float | None:
    """Seconds for one fresh miner to take ``lines``; None when the miner is not installed."""
    add = make()
    if add is None:
        return None
    started = time.perf_counter()
    for line in lines:
        add(line)
    return time.perf_counter() - started


def main(root: Path = DATA_ROOT) -> None:
    logging.getLogger("drain3").setLevel(logging.WARNING)
    total_lines = 0
    totals = {"ours": 0.0, "drain3": 0.0}
    for name in DATASETS:
        lines = load(root, name)
        best: dict[str, float] = {}
        for _ in range(ROUNDS):
            for label, make in (("ours", _ours), ("drain3", _drain3)):
                took = seconds(make, lines)
                if took is not None:
                    best[label] = min(best.get(label, took), took)
        total_lines += len(lines)
        for label, took in best.items():
            totals[label] += took
        row = f"log patterns {name:10s} {len(lines) / best['ours']:10,.0f} lines/s"
        if "drain3" in best:
            row += (
                f"   drain3 {len(lines) / best['drain3']:10,.0f} lines/s   ratio {best['drain3'] / best['ours']:5.2f}"
            )
        sys.stdout.write(row + "\n")
    ours = total_lines / totals["ours"]
    row = f"log patterns overall    {ours:10,.0f} lines/s over {total_lines} lines"
    if totals["drain3"]:
        drain3 = total_lines / totals["drain3"]
        row += f"   drain3 {drain3:10,.0f} lines/s   ratio {ours / drain3:5.2f}"
    sys.stdout.write(row + "\n")


def hostile() -> None:
    """Lines a hostile or careless client may send, beside drain3: each must cost about what a plain line costs."""
    rng = random.Random(7)
    cases = {
        # a quote never closed, then thousands of blanks: a backtracking quoted-text rule scans once per blank
        "unclosed quote": ["'" + " word" * 1900 + f" {i}" for i in range(200)],
        # lines of one key that never merge: compared with every earlier pattern, mining grows quadratically
        "never merge": [
            "note " + " ".join("".join(rng.choice("klmnopqrstu") for _ in range(5)) for _ in range(6))
            for _ in range(2000)
        ],
    }
    for name, lines in cases.items():
        row = f"hostile {name:15s}"
        for label, make in (("ours", _ours), ("drain3", _drain3)):
            took = seconds(make, lines)
            if took is not None:
                row += f"   {label} {len(lines) / took:10,.0f} lines/s"
        sys.stdout.write(row + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else DATA_ROOT)
    hostile()
