"""The verdict after a monitoring period: is the deployed change measurably better than what it replaced?

Four kinds of evidence: the component's benchmark (old and new code run interleaved, runs added until a rank test can
tell, see :mod:`generators.measure.stats`), its metric in the telemetry store (the points of the window before the
deployment against those of the monitoring period, the same test), its error log rate (same windows), and its tests
run again on the workspace as deployed.

What decides depends on what the opportunity was about:

* ``metric`` (a latency, a CPU figure...): kept only when the benchmark or the telemetry metric shows the change
  better by more than ``min_effect_percent`` with ``confidence``, and none shows it worse. Neither able to show it:
  "no measurable improvement", rolled back. A change is never kept just because nothing got worse.
* ``errors`` (born of an error pattern in the logs): judged on the errors. Kept when its tests, the reproducing test
  among them (proved to fail on the old code before the deployment), pass on the deployed code and the error rate
  did not rise; its benchmark must only not be worse.

Either way, failing tests, a rising error rate, a benchmark that no longer runs or a figure significantly worse
roll the change back as worse.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Literal, Protocol, runtime_checkable

from generators.deploy import FileVersion
from generators.errors import BenchmarkError
from generators.improvement.models import CycleConfig, Direction, MetricFigures, OpportunityKind
from generators.jobs.benchmark import BenchmarkJob, Benchmarks, LocalBenchmarks
from generators.measure.bench import find_benchmark
from generators.measure.stats import Goal, Rule, describe, interval_level, judge, plan, shift
from generators.validation import ValidationPipeline

logger = logging.getLogger(__name__)
Verdict = Literal["keep", "worse", "no_improvement"]
NO_IMPROVEMENT = "no measurable improvement"


@runtime_checkable
class MetricSamples(Protocol):
    """The telemetry figures' points themselves (the statistical test needs them, not only a mean)."""

    def metric_values(self, tenant: str, component: str, metric: str, start: float, end: float) -> list[float]:
        """The values of ``metric`` for ``component`` in [start, end], oldest first. Blocking."""
        ...


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
    kind: OpportunityKind = "metric"


@dataclass(slots=True)
class Evaluation:
    """Figures before and after, the decision, why (``reasons``: empty when kept) and a one-line ``summary``."""

    figures: dict[str, Any] = field(default_factory=dict)
    reasons: list[str] = field(default_factory=list)
    decision: Verdict = "no_improvement"
    summary: str = ""
    better: list[str] = field(default_factory=list)  # the evidence that showed the change better

    @property
    def kept(self) -> bool:
        return self.decision == "keep"

    @property
    def regressed(self) -> bool:
        """Worse than before (tests, errors, a figure), not merely no better."""
        return self.decision == "worse"

    @property
    def rollback_reason(self) -> str:
        """The deployment's rollback reason: ``regression: ...`` or ``no measurable improvement: ...``."""
        why = "; ".join(self.reasons)
        return f"regression: {why}" if self.regressed else why


def evaluate(
    workspace: Path,
    subject: Subject,
    versions: Sequence[FileVersion],
    figures: MetricFigures,
    pipeline: ValidationPipeline,
    config: CycleConfig,
    benchmarks: Benchmarks | None = None,
) -> Evaluation:
    """Collect every kind of evidence and decide; the benchmark runs where ``benchmarks`` runs it (here by default, in
    the pipeline's sandbox; or on the workers). Blocking (subprocesses, SQLite): run it in a worker thread."""
    result = Evaluation()
    goal: Goal = "not_worse" if subject.kind == "errors" else "improve"
    _benchmark(workspace, versions, config, result, benchmarks or LocalBenchmarks(workspace, pipeline.config), goal)
    if subject.kind == "errors":
        result.figures["telemetry"] = {"metric": subject.metric, "note": "an error fix is judged on its errors"}
    else:
        _telemetry(subject, figures, config, result)
    _errors(subject, figures, config, result)
    _tests(workspace, subject, pipeline, config, result)
    _decide(subject, config, result)
    return result


def worse_percent(before: float, after: float, direction: Direction) -> float:
    """How much worse ``after`` is than ``before`` in percent (negative: better; 0 for a neutral metric)."""
    if before == 0 or direction == "neutral":
        return 0.0
    change = 100.0 * (after - before) / abs(before)
    return change if direction == "up_is_bad" else -change


def rule_of(config: CycleConfig, lower_is_better: bool = True) -> Rule:
    return Rule(lower_is_better, config.min_effect_percent, config.regression_percent, config.confidence)


def _module(versions: Sequence[FileVersion]) -> FileVersion | None:
    for v in versions:
        name = PurePosixPath(v.path).name
        if name.endswith(".py") and not name.startswith("test_") and v.path.startswith("components/"):
            return v
    return None


def _benchmark(
    workspace: Path,
    versions: Sequence[FileVersion],
    config: CycleConfig,
    out: Evaluation,
    benchmarks: Benchmarks,
    goal: Goal,
) -> None:
    module = _module(versions)
    script = find_benchmark(workspace, module.path) if module else None
    if script is None:
        out.figures["benchmark"] = {"note": "no benchmarks/bench_<module>.py for this component"}
        return
    rule, sizes = rule_of(config), plan(config.benchmark_runs, config.benchmark_max_runs)
    level = interval_level(config.confidence, len(sizes))
    job = BenchmarkJob.of(
        script,
        {v.path: v.previous for v in versions},
        {v.path: v.new for v in versions},
        sizes=sizes,
        timeout=config.benchmark_timeout_seconds,
        rule=rule,  # the runs stop once this test can tell, wherever they run
        goal=goal,
        level=level,
    )
    found = benchmarks.run(job)
    try:
        bench, looks = found.raise_error(), found.looks
    except BenchmarkError as exc:
        out.figures["benchmark"] = {"script": script, "error": str(exc), "failed_on": exc.side}
        if exc.side == "after":  # broken on the old code too: not the change's fault, and no figure to compare
            out.reasons.append(f"the benchmark no longer runs: {exc}")
        return
    s = shift(bench.before, bench.after, level)
    decision = found.decision or "no_improvement"
    line = f"{script}: {describe(s, ('faster', 'slower'))}"
    out.figures["benchmark"] = {**bench.to_dict(), **s.figures(decision, config.confidence, looks)}
    out.figures["benchmark"]["summary"] = line
    if decision == "worse":
        out.reasons.append(f"{script} is {describe(s, ('faster', 'slower'))}")
    elif decision == "better":
        out.better.append(line)


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
    out.figures["telemetry"] = entry
    if min(n_before, n_after) < config.min_points:
        entry["note"] = f"fewer than {config.min_points} points on a side: not judged"
        return
    entry["worse_percent"] = round(worse_percent(before, after, subject.direction), 2)
    if subject.direction == "neutral" or not isinstance(figures, MetricSamples):
        entry["note"] = "a metric with no better direction, or no points to test: not judged"
        return
    old = figures.metric_values(subject.tenant, subject.component, subject.metric, start, split)
    new = figures.metric_values(subject.tenant, subject.component, subject.metric, split, end)
    if min(len(old), len(new)) < config.min_points:
        entry["note"] = f"fewer than {config.min_points} points on a side: not judged"
        return
    rule = rule_of(config, lower_is_better=subject.direction == "up_is_bad")
    s = shift(old, new, interval_level(config.confidence))
    decision = judge(s, rule) or "no_improvement"
    entry.update(s.figures(decision, config.confidence, 1))
    line = f"{subject.metric} since the deployment: {describe(s)}"
    entry["summary"] = line
    if decision == "worse":
        worse = abs(s.change_percent or 0.0)
        out.reasons.append(f"{subject.metric} is {worse:.1f}% worse since the deployment ({describe(s)})")
    elif decision == "better":
        out.better.append(line)


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


def _decide(subject: Subject, config: CycleConfig, out: Evaluation) -> None:
    """Worse when any evidence says so; else kept on the evidence its kind of opportunity asks for."""
    if out.reasons:
        out.decision, out.summary = "worse", "; ".join(out.reasons)
    elif subject.kind == "errors":
        tests = out.figures.get("tests", {})
        if tests.get("status") == "passed":
            errors = out.figures.get("errors", {})
            counts = f" ({errors['before']} -> {errors['after']} error lines)" if "before" in errors else ""
            out.decision = "keep"
            out.summary = (
                f"the error fix is proved: its tests, the reproducing test among them, pass on the deployed code, "
                f"and the error rate did not rise{counts}"
            )
        else:
            note = tests.get("note") or tests.get("status") or "not run"
            out.reasons.append(f"{NO_IMPROVEMENT}: the error fix is not proved on the deployed code (tests: {note})")
            out.decision, out.summary = "no_improvement", out.reasons[-1]
    elif out.better:
        out.decision, out.summary = "keep", "; ".join(out.better)
    else:
        out.reasons.append(f"{NO_IMPROVEMENT}: {_not_shown(subject, config, out.figures)}")
        out.decision, out.summary = "no_improvement", out.reasons[-1]
    out.figures["verdict"] = {
        "decision": out.decision,
        "kind": subject.kind,
        "note": f"{'kept' if out.kept else 'rolled back'}: {out.summary}",
    }


def _not_shown(subject: Subject, config: CycleConfig, figures: dict[str, Any]) -> str:
    """Why neither the benchmark nor the telemetry showed the change better by the smallest effect, with figures."""
    parts = []
    for name in ("benchmark", "telemetry"):
        entry = figures.get(name, {})
        parts.append(str(entry.get("summary") or f"{name}: {entry.get('note') or entry.get('error') or 'none'}"))
    need = f"{config.min_effect_percent:g}% better with {config.confidence:.0%} confidence"
    return f"neither the benchmark nor {subject.metric} shows the change {need}: " + "; ".join(parts)
