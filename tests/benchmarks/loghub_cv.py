"""Log-pattern miner on loghub: the full figures and leave-one-system-out, through the shared scorer.

Every setting combination of a small grid is scored by ``/work/shared/harness/loghub_ga.py`` on all systems. The
full figure is the shipped default configuration on every system. Leave-one-system-out chooses, for each system,
the combination with the best mean GA (then PA) on the *other* systems and reports what it scores on the one
left out: the figure a user's own, unseen logs can expect if the defaults were chosen this way.

Run: python -m tests.benchmarks.loghub_cv [--raw] [--corrected] [--data DATA_ROOT] [--grid NAME=V1,V2 ...]
(``python -m tests.benchmarks.loghub_cv mine [--set NAME=VALUE ...] FILE`` is the command the scorer runs.)
"""

from __future__ import annotations

import argparse
import itertools
import re
import subprocess
import sys
from pathlib import Path

from telemetry.learning.logpatterns import MinerConfig, mine_file

SCORER = Path("/work/shared/harness/loghub_ga.py")
DATA_ROOT = Path("/work/shared/data/loghub")
DEFAULT_GRID = ("distinct_values=3,4,5,6,8", "similarity_threshold=0.6,0.7,0.8,0.9")
_ROW = re.compile(r"^(\S+)\s+GA=([\d.]+) FGA=([\d.]+) PA=([\d.]+) FTA=([\d.]+)$")
METRICS = ("GA", "FGA", "PA", "FTA")
Scores = dict[str, dict[str, float]]


def _settings(pairs: list[str]) -> dict[str, float]:
    out: dict[str, float] = {}
    for pair in pairs:
        name, _, value = pair.partition("=")
        out[name] = float(value) if "." in value else int(value)
    return out


def mine(args: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="loghub_cv mine")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("file", type=Path)
    ns = parser.parse_args(args)
    return mine_file(ns.file, sys.stdout, config=MinerConfig.model_validate(_settings(ns.set)))


def score(data: Path, flags: list[str], settings: dict[str, float]) -> Scores:
    """Per-system scores of the miner with ``settings``, as the shared scorer prints them."""
    command = [sys.executable, "-m", "tests.benchmarks.loghub_cv", "mine"]
    for name, value in settings.items():
        command += ["--set", f"{name}={value}"]
    out = subprocess.run(
        [sys.executable, str(SCORER), str(data), *flags, "cmd", "--", *command],
        capture_output=True,
        text=True,
        check=True,
        timeout=1200,
    ).stdout
    table: Scores = {}
    for line in out.splitlines():
        row = _ROW.match(line)
        if row:
            table[row.group(1)] = dict(zip(METRICS, map(float, row.groups()[1:]), strict=True))
    return table


def _mean(table: Scores, metric: str, systems: list[str]) -> float:
    return sum(table[s][metric] for s in systems) / len(systems)


def main() -> None:
    parser = argparse.ArgumentParser(prog="loghub_cv")
    parser.add_argument("--raw", action="store_true")
    parser.add_argument("--corrected", action="store_true")
    parser.add_argument("--data", type=Path, default=DATA_ROOT)
    parser.add_argument("--grid", nargs="*", default=list(DEFAULT_GRID), metavar="NAME=V1,V2")
    ns = parser.parse_args()
    flags = [f for f, on in (("--raw", ns.raw), ("--corrected", ns.corrected)) if on]
    axes = [(name, values.split(",")) for name, _, values in (g.partition("=") for g in ns.grid)]
    combos = [
        _settings([f"{n}={v}" for n, v in zip([a[0] for a in axes], vs, strict=True)])
        for vs in itertools.product(*(a[1] for a in axes))
    ]
    default = score(ns.data, flags, {})
    systems = sorted(default)
    tables = [(combo, score(ns.data, flags, combo)) for combo in combos]
    out = sys.stdout
    for combo, table in tables:
        out.write(f"grid {combo}: GA={_mean(table, 'GA', systems):.3f} PA={_mean(table, 'PA', systems):.3f}\n")
    out.write(f"{'system':12s} {'full GA':>8s} {'full PA':>8s} {'LOSO GA':>8s} {'LOSO PA':>8s}  chosen on the others\n")
    loso: Scores = {}
    for held in systems:
        others = [s for s in systems if s != held]
        combo, table = max(tables, key=lambda t: (_mean(t[1], "GA", others), _mean(t[1], "PA", others)))
        loso[held] = table[held]
        full, left_out = default[held], table[held]
        out.write(
            f"{held:12s} {full['GA']:8.3f} {full['PA']:8.3f} {left_out['GA']:8.3f} {left_out['PA']:8.3f}  {combo}\n"
        )
    out.write(
        f"{'mean':12s} {_mean(default, 'GA', systems):8.3f} {_mean(default, 'PA', systems):8.3f} "
        f"{_mean(loso, 'GA', systems):8.3f} {_mean(loso, 'PA', systems):8.3f}\n"
    )
    corrected = [s for s in systems if (ns.data / s / f"{s}_2k.log_structured_corrected.csv").exists()]
    if ns.corrected and corrected:
        out.write(
            f"mean PA of the {len(corrected)} systems with corrected templates: "
            f"full {_mean(default, 'PA', corrected):.3f}, leave-one-system-out {_mean(loso, 'PA', corrected):.3f}\n"
        )


if __name__ == "__main__":
    if sys.argv[1:2] == ["mine"]:
        sys.exit(mine(sys.argv[2:]))
    main()
