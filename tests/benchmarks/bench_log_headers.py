"""Raw log lines: how often the learned header split leaves exactly loghub's message, full and leave-one-system-out,
how fast lines are split, and raw lines split and mined beside drain3 mining the same raw lines, in the same run.

For each system the raw ``X_2k.log`` lines go through one :class:`LogSource` as ``log-patterns`` does (learn from
the first lines, then split); a line counts when its message equals loghub's ``Content`` column. The full figure
uses the shipped settings. Leave-one-system-out picks, for each system, the setting pair with the best mean on the
other systems (ties to the shipped pair) and reports it on the one left out. The split rate is lines/s of ``parse``
once the layout is learned; "raw" is lines/s of learning, splitting and ``LogPatternMiner.add`` together, as
``log-patterns`` does, beside drain3's ``add_log_message`` on the same raw lines (the scorer's baseline settings),
interleaved, best of a few rounds each.

Run: python -m tests.benchmarks.bench_log_headers [DATA_ROOT] (default /work/shared/data/loghub).
"""

from __future__ import annotations

import csv
import itertools
import logging
import sys
import time
from pathlib import Path

from telemetry.learning.logpatterns import LogPatternMiner, LogSource
from telemetry.learning.logpatterns.headers import CONSISTENCY, SAMPLE_LINES

DATA_ROOT = Path("/work/shared/data/loghub")
SHARES = (0.6, 0.75, CONSISTENCY, 0.97)
SAMPLES = (20, 50, SAMPLE_LINES, 1000)
ROUNDS = 3


def load(folder: Path) -> tuple[list[str], list[str]]:
    name = folder.name
    with (folder / f"{name}_2k.log_structured.csv").open(encoding="utf-8", errors="replace", newline="") as f:
        contents = [row["Content"] for row in csv.DictReader(f)]
    raw = (folder / f"{name}_2k.log").read_text(encoding="utf-8", errors="replace").splitlines()[: len(contents)]
    return raw, contents


def exact_share(raw: list[str], contents: list[str], share: float, sample: int) -> float:
    source = LogSource(consistency=share, sample_lines=sample)
    hits = 0
    for start in range(0, len(raw), sample):
        chunk = raw[start : start + sample]
        source.learn(chunk)
        hits += sum(
            source.parse(line).message.strip() == c.strip() for line, c in zip(chunk, contents[start:], strict=False)
        )
    return hits / len(raw)


def lines_per_second(raw: list[str]) -> float:
    source = LogSource()
    source.learn(raw)
    best = float("inf")
    for _ in range(ROUNDS):
        started = time.perf_counter()
        for line in raw:
            source.parse(line)
        best = min(best, time.perf_counter() - started)
    return len(raw) / best


def raw_seconds(raw: list[str]) -> float:
    started = time.perf_counter()
    source, miner = LogSource(), LogPatternMiner()
    for start in range(0, len(raw), SAMPLE_LINES):
        chunk = raw[start : start + SAMPLE_LINES]
        source.learn(chunk)
        for line in chunk:
            parsed = source.parse(line)
            miner.add(parsed.message, timestamp=parsed.timestamp, level=parsed.level, component=parsed.component)
    return time.perf_counter() - started


def drain3_seconds(raw: list[str]) -> float | None:
    try:
        from drain3 import TemplateMiner
        from drain3.masking import MaskingInstruction
        from drain3.template_miner_config import TemplateMinerConfig
    except ImportError:  # an optional dev dependency
        return None
    config = TemplateMinerConfig()
    config.drain_sim_th, config.drain_depth = 0.4, 4
    edges = r"((?<=[^A-Za-z0-9])|^)", r"((?=[^A-Za-z0-9])|$)"
    config.masking_instructions = [
        MaskingInstruction(edges[0] + body + edges[1], "*")
        for body in (r"(\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3})", r"([\-\+]?\d+)", r"(0x[a-fA-F0-9]+)")
    ]
    started = time.perf_counter()
    miner = TemplateMiner(config=config)
    for line in raw:
        miner.add_log_message(line)
    return time.perf_counter() - started


def main(root: Path = DATA_ROOT) -> None:
    systems = {p.name: load(p) for p in sorted(root.iterdir()) if (p / f"{p.name}_2k.log").is_file()}
    grid = list(itertools.product(SHARES, SAMPLES))
    table = {(name, g): exact_share(*data, *g) for name, data in systems.items() for g in grid}
    shipped = (CONSISTENCY, SAMPLE_LINES)
    loso = {}
    for name in systems:
        others = [n for n in systems if n != name]
        chosen = max(grid, key=lambda g: (sum(table[(n, g)] for n in others), g == shipped))
        loso[name] = table[(name, chosen)]
    logging.getLogger("drain3").setLevel(logging.WARNING)
    for name, (raw, _) in systems.items():
        ours, theirs = float("inf"), float("inf")
        for _ in range(ROUNDS):
            ours = min(ours, raw_seconds(raw))
            theirs = min(theirs, drain3_seconds(raw) or float("inf"))
        drain3 = f"  drain3 {len(raw) / theirs:7,.0f}/s" if theirs < float("inf") else ""
        sys.stdout.write(
            f"log headers {name:10s} exact split {table[(name, shipped)]:.4f}  leave-one-out {loso[name]:.4f}  "
            f"split {lines_per_second(raw):7,.0f}/s  raw split+mine {len(raw) / ours:7,.0f}/s{drain3}\n"
        )
    full = sum(table[(n, shipped)] for n in systems) / len(systems)
    sys.stdout.write(
        f"log headers mean       exact split {full:.4f}  leave-one-out {sum(loso.values()) / len(loso):.4f}\n"
    )


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else DATA_ROOT)
