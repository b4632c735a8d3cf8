"""Several candidates for one opportunity: every one is validated, and the best by its measured figure is deployed.

With a benchmark (``benchmarks/bench_<module>.py``), each validated candidate runs interleaved against the old code
(``benchmark_runs`` per side) and the lowest ratio of medians new/old wins; the others are archived "not chosen" with
their figures. Without one, or for an error fix (judged on its reproducing test, not on speed), the first validated
candidate is deployed. A candidate whose benchmark fails is not chosen; the verdict after deployment measures again,
with its statistical test, whichever candidate was deployed.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from generators.errors import BenchmarkError
from generators.improvement.models import CycleConfig
from generators.jobs.benchmark import BenchmarkJob, Benchmarks
from generators.measure.bench import find_benchmark

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Choice:
    """The index of the chosen candidate and, per candidate, its figure (ratio new/old) or why it has none."""

    chosen: int
    figures: list[dict[str, object]]


def choose(
    workspace: Path,
    module: str,
    old: bytes,
    candidates: Sequence[dict[str, bytes]],
    *,
    measure: bool,
    config: CycleConfig,
    benchmarks: Benchmarks,
) -> Choice:
    """The best of ``candidates`` (each: path -> new bytes), measured where ``benchmarks`` runs them (here, or on the
    workers). Blocking (subprocesses, or waiting for a worker): run it in a worker thread."""
    script = find_benchmark(workspace, module) if measure and len(candidates) > 1 else None
    if script is None:
        return Choice(0, [{"note": "not measured: the first validated candidate is deployed"} for _ in candidates])
    figures: list[dict[str, object]] = []
    best, best_ratio = 0, float("inf")
    current = _current(workspace, module, old, {path for files in candidates for path in files})
    for index, files in enumerate(candidates):
        before = {path: current[path] for path in files}
        job = BenchmarkJob.of(
            script, before, files, sizes=[config.benchmark_runs], timeout=config.benchmark_timeout_seconds
        )
        try:
            bench = benchmarks.run(job).raise_error()
        except BenchmarkError as exc:
            figures.append({"error": str(exc)[:500]})
            continue
        ratio = bench.after_median / bench.before_median if bench.before_median else 1.0
        figures.append({"ratio": round(ratio, 4), "change_percent": round(bench.change_percent, 2)})
        if ratio < best_ratio:
            best, best_ratio = index, ratio
    return Choice(best, figures)


def _current(workspace: Path, module: str, old: bytes, paths: set[str]) -> dict[str, bytes | None]:
    """The workspace's bytes of every path some candidate writes (``None``: it does not exist), each read once."""
    found: dict[str, bytes | None] = {}
    for path in paths:
        target = workspace / path
        found[path] = old if path == module else target.read_bytes() if target.is_file() else None
    return found
