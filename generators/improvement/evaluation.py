"""The verdict after a monitoring period: is the deployed change worse than what it replaced?

Four kinds of evidence, each optional: the component's benchmark (old and new code run interleaved), its metric in
the telemetry store (the window before the deployment against the monitoring period), its error log rate (same
windows), and its tests run again on the workspace as deployed. A change is worse when the benchmark or the metric
moved more than ``regression_percent`` in the bad direction, the error rate rose by as much (with at least
``min_errors`` errors after), or a test fails. Missing evidence (no benchmark, too few points) is reported, not held
against the change.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from generators.deploy import FileVersion
from generators.improvement.bench import BenchmarkError, find_benchmark, run_interleaved
from generators.improvement.models import CycleConfig, Direction, MetricFigures
from generators.validation import ValidationPipeline

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Subject:
    """What was deployed and what it was meant to improve."""

    tenant: str
    component: str
    metric: str
    direction: Direction
    deployed_at: float
    monitored_until: float
    test_paths: tuple[str, ...] = ()


@dataclass(slots=True)
class Evaluation:
    """Figures before and after, and the reasons (empty: keep the change)."""

    figures: dict[str, Any] = field(default_factory=dict)
    reasons: list[str] = field(default_factory=list)

    @property
    def regressed(self) -> bool:
        return bool(self.reasons)


def evaluate(
    workspace: Path,
    subject: Subject,
    versions: Sequence[FileVersion],
    figures: MetricFigures,
    pipeline: ValidationPipeline,
    config: CycleConfig,
) -> Evaluation:
    """Collect every kind of evidence and decide. Blocking (subprocesses, SQLite): run it in a worker thread."""
    result = Evaluation()
    _benchmark(workspace, versions, config, result, pipeline)
    _telemetry(subject, figures, config, result)
    _errors(subject, figures, config, result)
    _tests(workspace, subject, pipeline, config, result)
    return result


def worse_percent(before: float, after: float, direction: Direction) -> float:
    """How much worse ``after`` is than ``before`` in percent (negative: better; 0 for a neutral metric)."""
    if before == 0 or direction == "neutral":
        return 0.0
    change = 100.0 * (after - before) / abs(before)
    return change if direction == "up_is_bad" else -change


def _module(versions: Sequence[FileVersion]) -> FileVersion | None:
    for v in versions:
        name = PurePosixPath(v.path).name
        if name.endswith(".py") and not name.startswith("test_") and v.path.startswith("components/"):
            return v
    return None


def _benchmark(
    workspace: Path, versions: Sequence[FileVersion], config: CycleConfig, out: Evaluation, pipeline: ValidationPipeline
) -> None:
    module = _module(versions)
    script = find_benchmark(workspace, module.path) if module else None
    if script is None:
        out.figures["benchmark"] = {"note": "no benchmarks/bench_<module>.py for this component"}
        return
    try:
        bench = run_interleaved(
            workspace,
            script,
            {v.path: v.previous for v in versions},
            {v.path: v.new for v in versions},
            runs=config.benchmark_runs,
            timeout=config.benchmark_timeout_seconds,
            config=pipeline.config,  # the server's sandbox limits and scratch folder
        )
    except BenchmarkError as exc:
        out.figures["benchmark"] = {"script": script, "error": str(exc), "failed_on": exc.side}
        if exc.side == "after":  # broken on the old code too: not the change's fault, and no figure to compare
            out.reasons.append(f"the benchmark no longer runs: {exc}")
        return
    out.figures["benchmark"] = bench.to_dict()
    if bench.change_percent > config.regression_percent:
        out.reasons.append(
            f"{script} is {bench.change_percent:.1f}% slower (median {bench.before_median:.4g} -> "
            f"{bench.after_median:.4g}; limit {config.regression_percent:g}%)"
        )


def _windows(subject: Subject) -> tuple[float, float, float]:
    """Start of the baseline window, the deployment time, and the end of monitoring."""
    span = max(subject.monitored_until - subject.deployed_at, 3600.0)
    return subject.deployed_at - span, subject.deployed_at, subject.monitored_until


def _telemetry(subject: Subject, figures: MetricFigures, config: CycleConfig, out: Evaluation) -> None:
    start, split, end = _windows(subject)
    before, n_before = figures.metric_mean(subject.tenant, subject.component, subject.metric, start, split)
    after, n_after = figures.metric_mean(subject.tenant, subject.component, subject.metric, split, end)
    entry: dict[str, Any] = {
        "metric": subject.metric,
        "direction": subject.direction,
        "before_mean": before,
        "before_points": n_before,
        "after_mean": after,
        "after_points": n_after,
    }
    if min(n_before, n_after) < config.min_points:
        entry["note"] = f"fewer than {config.min_points} points on a side: not judged"
    else:
        worse = worse_percent(before, after, subject.direction)
        entry["worse_percent"] = round(worse, 2)
        if worse > config.regression_percent:
            out.reasons.append(
                f"{subject.metric} is {worse:.1f}% worse since the deployment ({before:.4g} -> {after:.4g}; "
                f"limit {config.regression_percent:g}%)"
            )
    out.figures["telemetry"] = entry


def _errors(subject: Subject, figures: MetricFigures, config: CycleConfig, out: Evaluation) -> None:
    start, split, end = _windows(subject)
    before = figures.error_count(subject.tenant, subject.component, start, split)
    after = figures.error_count(subject.tenant, subject.component, split, end)
    if before is None or after is None:
        out.figures["errors"] = {"note": "too many log lines in a window to count: not judged"}
        return
    rate_before = 60.0 * before / max(split - start, 1e-9)
    rate_after = 60.0 * after / max(end - split, 1e-9)
    out.figures["errors"] = {
        "before": before,
        "after": after,
        "per_minute_before": round(rate_before, 4),
        "per_minute_after": round(rate_after, 4),
    }
    if after >= config.min_errors and rate_after > rate_before * (1 + config.regression_percent / 100):
        out.reasons.append(
            f"the error rate of {subject.component} rose from {rate_before:.3g} to {rate_after:.3g} per minute"
        )


def _tests(
    workspace: Path, subject: Subject, pipeline: ValidationPipeline, config: CycleConfig, out: Evaluation
) -> None:
    paths = [p for p in subject.test_paths if (workspace / p).is_file()]
    if not paths:
        out.figures["tests"] = {"note": "no tests for this component"}
        return
    report = pipeline.run(workspace, {}, stages=["tests"], test_paths=paths, timeout=config.benchmark_timeout_seconds)
    stage = report.stage("tests")
    out.figures["tests"] = {"status": stage.status, "note": stage.note, "paths": paths}
    if stage.status == "failed":
        out.reasons.append(f"the tests fail on the deployed code: {stage.note}")
