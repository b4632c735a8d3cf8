"""Parts of the improvement cycle on their own: the interleaved benchmark (which side failed), the verdict's
handling of a benchmark broken before the change, runs added until the rank test can tell, the telemetry judged by
the same test, the proof an error fix must give (its test fails on the old code), and the mypy worker surviving the
loss of its process."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import get_args

import pytest

from generators.deploy import FileVersion
from generators.errors import BenchmarkError, IllegalTransitionError
from generators.improvement import CycleConfig
from generators.improvement.evaluation import Subject, evaluate
from generators.improvement.models import TRANSITIONS, CandidateRecord, CandidateStatus, check_transition
from generators.improvement.proof import prove_fix
from generators.measure.bench import run_interleaved
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
    # Broken before the change: not held against it, but nothing shows it better either.
    assert verdict.decision == ("worse" if side == "after" else "no_improvement")
    assert not verdict.kept
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


# The figure is a fixed "noise" sequence (the n-th run of a side prints the n-th value) times the code's cost factor:
# deterministic, so what the verdict decides does not depend on this machine's speed.
COUNTING_BENCH = """
import pathlib
from components.thing import FACTOR
counter = pathlib.Path("runs_so_far")
n = int(counter.read_text()) if counter.exists() else 0
counter.write_text(str(n + 1))
print([100, 91, 108, 95, 104, 99, 93, 106][n % 8] * FACTOR)
"""


@pytest.mark.parametrize(
    ("factor", "decision", "runs", "looks"),
    [
        (b"1.0", "no_improvement", 12, 3),  # the same code: every look straddles the smallest effect, up to the most
        (b"0.5", "better", 6, 2),  # twice as fast: 3 runs a side allow no interval at 95 %, 6 tell
        (b"1.5", "worse", 6, 2),
    ],
)
def test_runs_are_added_until_the_test_can_tell(
    tmp_path: Path, factor: bytes, decision: str, runs: int, looks: int
) -> None:
    ws = workspace(tmp_path, COUNTING_BENCH)
    old, new = b"FACTOR = 1.0\n", b"FACTOR = " + factor + b"\n"
    versions = [FileVersion.of("components/thing.py", old, new)]
    subject = Subject("default", "thing", "latency_ms", "up_is_bad", 1000.0, 1060.0)
    config = CycleConfig(benchmark_runs=3, benchmark_max_runs=12)
    verdict = evaluate(ws, subject, versions, NoFigures(), ValidationPipeline(), config)
    bench = verdict.figures["benchmark"]
    assert (bench["decision"], bench["runs"], bench["looks"]) == (decision, runs, looks), bench
    assert len(bench["before"]) == len(bench["after"]) == runs
    assert bench["confidence"] == 0.95 and bench["interval_level"] == pytest.approx(1 - 0.1 / 3, abs=1e-4)
    assert bench["method"].startswith("Hodges-Lehmann")
    if decision == "better":
        assert verdict.kept and bench["effect_percent"] == pytest.approx(-50, abs=1)
        assert bench["interval_percent"][1] < -5 and verdict.reasons == []
    elif decision == "worse":
        assert verdict.regressed and any("bench_thing.py is" in r and "slower" in r for r in verdict.reasons)
    else:
        assert verdict.decision == "no_improvement" and not verdict.kept
        (reason,) = verdict.reasons
        assert reason.startswith("no measurable improvement: ") and "12 before and 12 after" in reason, reason
    assert verdict.figures["verdict"]["decision"] == {"better": "keep", "worse": "worse"}.get(decision, decision)


class Points(NoFigures):
    """Telemetry with the points of each window (``metric_values``) and no logs to count."""

    def __init__(self, before: list[float], after: list[float]) -> None:
        self.windows = (before, after)

    def metric_values(self, tenant: str, component: str, metric: str, start: float, end: float) -> list[float]:
        return self.windows[0] if end <= 1000.0 else self.windows[1]

    def metric_mean(self, tenant: str, component: str, metric: str, start: float, end: float) -> tuple[float, int]:
        values = self.metric_values(tenant, component, metric, start, end)
        return sum(values) / len(values), len(values)


@pytest.mark.parametrize(
    ("after", "direction", "decision"),
    [
        ([50.0, 52.0, 49.0, 51.0, 50.5], "up_is_bad", "keep"),  # latency halved
        ([101.0, 99.0, 100.5, 98.0, 102.0], "up_is_bad", "no_improvement"),  # the same, within noise
        ([150.0, 149.0, 152.0, 151.0, 150.5], "down_is_bad", "keep"),  # throughput up by half
        ([150.0, 149.0, 152.0, 151.0, 150.5], "up_is_bad", "worse"),
    ],
)
def test_the_telemetry_metric_is_judged_by_the_same_test(
    tmp_path: Path, after: list[float], direction: str, decision: str
) -> None:
    ws = tmp_path / "ws"
    (ws / "components").mkdir(parents=True)  # no benchmark: the telemetry is the only evidence
    versions = [FileVersion.of("components/thing.py", OLD, NEW)]
    before = [100.0, 98.0, 102.0, 101.0, 99.0, 100.5]
    subject = Subject("default", "thing", "latency_ms", direction, 1000.0, 1060.0)  # type: ignore[arg-type]
    verdict = evaluate(ws, subject, versions, Points(before, after), ValidationPipeline(), CycleConfig())
    telemetry = verdict.figures["telemetry"]
    assert verdict.decision == decision, verdict
    assert telemetry["runs"] == 5 and telemetry["interval_level"] == pytest.approx(0.9)
    if decision == "no_improvement":
        assert "neither the benchmark nor latency_ms shows the change 5% better" in verdict.reasons[0]
    if decision == "worse":
        assert any("latency_ms is" in r and "worse since the deployment" in r for r in verdict.reasons)


def test_an_error_fix_is_kept_on_its_passing_tests_not_on_a_speed_up(tmp_path: Path) -> None:
    ws = workspace(tmp_path, COUNTING_BENCH)
    (ws / "components" / "thing.py").write_bytes(b"FACTOR = 1.0\n")
    (ws / "tests").mkdir()
    (ws / "tests" / "test_thing.py").write_text("from components.thing import FACTOR\n\n\ndef test_f():\n"
                                                "    assert FACTOR == 1.0\n")  # fmt: skip
    versions = [FileVersion.of("components/thing.py", b"FACTOR = 1.0\n", b"FACTOR = 1.0\n")]
    subject = Subject("default", "thing", "log.errors", "up_is_bad", 1000.0, 1060.0, ("tests/test_thing.py",), "errors")
    config = CycleConfig(benchmark_runs=3, benchmark_max_runs=6)
    verdict = evaluate(ws, subject, versions, NoFigures(), ValidationPipeline(), config)
    assert verdict.kept, verdict
    assert verdict.figures["benchmark"]["decision"] == "no_improvement" and "error fix is proved" in verdict.summary
    (ws / "tests" / "test_thing.py").unlink()
    verdict = evaluate(ws, subject, versions, NoFigures(), ValidationPipeline(), config)
    assert verdict.decision == "no_improvement" and "not proved" in verdict.reasons[0]


KV_OLD = 'def parse_pair(text: str) -> tuple[str, str]:\n    key, value = text.split("=")\n    return key, value\n'
REPRODUCES = (
    "from components.kv import parse_pair\n\n\ndef test_flag_without_value() -> None:\n"
    '    assert parse_pair("flag") == ("flag", "")\n'
)
PASSES_ON_OLD_TOO = (
    'from components.kv import parse_pair\n\n\ndef test_pair() -> None:\n    assert parse_pair("a=b") == ("a", "b")\n'
)
FAILS_OTHERWISE = (
    'from components.kv import parse_pair\n\n\ndef test_pair() -> None:\n    assert parse_pair("a=b") == ("b", "a")\n'
)
CANNOT_COLLECT = "from components.kv import parse_flag\n\n\ndef test_flag() -> None:\n    assert parse_flag('x')\n"
LOGGED = "5 error lines like 'ValueError: not enough values to unpack (expected 2, got 1)'"


@pytest.mark.parametrize(
    ("tests", "proved", "why"),
    [
        ({"tests/test_kv.py": REPRODUCES}, True, "1 test(s) fail on the old code"),
        ({"tests/test_kv.py": PASSES_ON_OLD_TOO}, False, "no test fails on the old code"),
        ({"tests/test_kv.py": FAILS_OTHERWISE}, False, "but not with the logged ValueError"),
        ({"tests/test_kv.py": CANNOT_COLLECT}, False, "cannot be collected there"),
        ({}, False, "it has no test"),
    ],
)
def test_an_error_fix_must_bring_a_test_that_fails_on_the_old_code(
    tmp_path: Path, tests: dict[str, str], proved: bool, why: str
) -> None:
    ws = tmp_path / "ws"
    (ws / "components").mkdir(parents=True)
    (ws / "components" / "kv.py").write_text(KV_OLD, encoding="utf-8")
    fix = KV_OLD.replace('key, value = text.split("=")', 'key, _, value = text.partition("=")')
    proof = prove_fix(ValidationPipeline(), ws, "components/kv.py", {"components/kv.py": fix, **tests}, LOGGED)
    assert proof.proved is proved and why in proof.message, proof
    if not proved:
        assert proof.message.startswith("the change does not prove its fix")
        assert "Add to tests/test_kv.py a test that reproduces the logged failure" in proof.message
    assert (ws / "components" / "kv.py").read_text(encoding="utf-8") == KV_OLD, "run in the sandbox, not in place"


def test_every_candidate_status_has_its_ways_out_and_each_is_reachable() -> None:
    """The transition table names every status, and every status can be reached from a new (queued) candidate."""
    statuses = set(get_args(CandidateStatus))
    assert set(TRANSITIONS) == statuses
    assert all(TRANSITIONS[s] <= statuses for s in statuses)
    reached, frontier = {"queued"}, ["queued"]
    while frontier:
        for after in TRANSITIONS[frontier.pop()] - reached:  # type: ignore[index]
            reached.add(after)
            frontier.append(after)
    assert reached == statuses


@pytest.mark.parametrize(
    ("before", "after", "allowed"),
    [
        ("queued", "generating", True),
        ("generating", "generating", True),  # more detail, same status
        ("deploying", "pending_approval", True),
        ("pending_approval", "monitoring", True),  # approved
        ("monitoring", "kept", True),
        ("kept", "generating", False),  # a settled candidate never starts again
        ("queued", "monitoring", False),  # nothing is monitored that was not deployed
        ("rolled_back", "kept", False),
        ("pending_approval", "kept", False),  # an approval deploys, the verdict comes after monitoring
    ],
)
def test_a_candidate_moves_only_along_the_transition_table(before: str, after: str, allowed: bool) -> None:
    record = CandidateRecord("c1", 0, "slow_stats", "latency_ms", before, 0.0)  # type: ignore[arg-type]
    if allowed:
        check_transition(record, after)  # type: ignore[arg-type]
    else:
        with pytest.raises(IllegalTransitionError, match=f"cannot go from {before} to {after}"):
            check_transition(record, after)  # type: ignore[arg-type]


# (the cycle store's own tests run on every backend: tests/test_cycle_store.py)
