"""Parts of the improvement cycle on their own: the interleaved benchmark (which side failed), the verdict's
handling of a benchmark broken before the change, and the mypy worker surviving the loss of its process."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from generators.deploy import FileVersion
from generators.improvement import CycleConfig
from generators.improvement.bench import BenchmarkError, run_interleaved
from generators.improvement.evaluation import Subject, evaluate
from generators.validation import ValidationConfig, ValidationPipeline

pytestmark = pytest.mark.slow

OLD = b"def work() -> int:\n    return sum(range(1000))\n"
NEW = b"def work() -> int:\n    return 499500\n"
BENCH = (
    "import sys, time\nfrom components.thing import work\nstarted = time.perf_counter()\nwork()\n"
    "print('took', (time.perf_counter() - started) * 1000)\nprint('warning at line 42', file=sys.stderr)\n"
)


class NoFigures:
    def metric_mean(self, tenant: str, component: str, metric: str, start: float, end: float) -> tuple[float, int]:
        return 0.0, 0

    def error_count(self, tenant: str, component: str, start: float, end: float) -> int | None:
        return None


def workspace(tmp_path: Path, bench: str = BENCH) -> Path:
    ws = tmp_path / "ws"
    (ws / "components").mkdir(parents=True)
    (ws / "benchmarks").mkdir()
    (ws / "components" / "thing.py").write_bytes(NEW)
    (ws / "benchmarks" / "bench_thing.py").write_text(bench, encoding="utf-8")
    return ws


def test_interleaved_runs_take_the_last_number_of_stdout(tmp_path: Path) -> None:
    ws = workspace(tmp_path)
    figures = run_interleaved(ws, "benchmarks/bench_thing.py", {"components/thing.py": OLD},
                              {"components/thing.py": NEW}, runs=2, timeout=60)  # fmt: skip
    assert len(figures.before) == len(figures.after) == 2
    assert all(v != 42 for v in [*figures.before, *figures.after])


@pytest.mark.parametrize("side", ["before", "after"])
def test_a_failing_side_is_named_and_only_the_new_code_failing_counts_against_it(tmp_path: Path, side: str) -> None:
    # The benchmark fails on whichever version carries the marker.
    bench = (
        "import pathlib, sys\nif 'BROKEN' in pathlib.Path('components/thing.py').read_text():\n"
        "    sys.exit(1)\nprint(1.5)\n"
    )
    old, new = (OLD + b"# BROKEN\n", NEW) if side == "before" else (OLD, NEW + b"# BROKEN\n")
    ws = workspace(tmp_path, bench)
    with pytest.raises(BenchmarkError) as raised:
        run_interleaved(ws, "benchmarks/bench_thing.py", {"components/thing.py": old},
                        {"components/thing.py": new}, runs=1, timeout=60)  # fmt: skip
    assert raised.value.side == side
    versions = [FileVersion.of("components/thing.py", old, new)]
    subject = Subject("default", "thing", "latency_ms", "up_is_bad", 1000.0, 1060.0)
    verdict = evaluate(ws, subject, versions, NoFigures(), ValidationPipeline(), CycleConfig(benchmark_runs=1))
    assert verdict.figures["benchmark"]["failed_on"] == side
    assert verdict.regressed is (side == "after")
    assert verdict.figures["errors"]["note"].startswith("too many log lines")


def test_mypy_worker_lost_between_checks_is_replaced(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    (ws / "components").mkdir(parents=True)
    pipeline = ValidationPipeline(ValidationConfig(mypy_cache_dir=tmp_path / "cache", mypy_persistent=True))
    change = {"components/x.py": "def f(x: int) -> str:\n    return x\n"}
    try:
        first = pipeline.run(ws, change, stages=["types"]).stage("types")
        assert [f.rule for f in first.findings] == ["mypy:return-value"]
        worker = pipeline._mypy
        assert worker is not None and worker._process is not None
        os.kill(worker._process.pid, signal.SIGKILL)
        worker._process.wait()
        again = pipeline.run(ws, change, stages=["types"]).stage("types")
        assert [f.rule for f in again.findings] == ["mypy:return-value"], again
    finally:
        pipeline.close()
