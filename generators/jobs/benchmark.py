"""A benchmark job: a component's benchmark on the code before and after a change, as plain data that can travel (to
a worker on another machine with the same workspace), and its figures back.

Two kinds of run, as :mod:`generators.measure.bench` has them: interleaved runs of a fixed number (choosing among
a candidate's attempts), or adaptive runs that stop once the verdict's statistical test can tell (judging a deployed
change; the test's rule travels with the job, so the worker decides when it has seen enough exactly as the server
would). A failed run is an answer too: its error and the side it failed on come back and are raised where the job
was asked for.

:class:`Benchmarks` is the seam, blocking (the callers run in worker threads): :class:`LocalBenchmarks` runs here;
:class:`generators.jobs.queue_pg.QueuedBenchmarks` puts the job in PostgreSQL's queue for the workers.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol, cast

from generators.errors import BenchmarkError
from generators.measure.bench import BenchFigures, run_adaptive, run_interleaved
from generators.measure.stats import Decision, Goal, Rule, judge, shift
from generators.validation.models import ValidationConfig

KIND = "benchmark"


def _pack(files: Mapping[str, bytes | None]) -> dict[str, str | None]:
    return {path: None if data is None else base64.b64encode(data).decode("ascii") for path, data in files.items()}


def _unpack(files: Mapping[str, str | None]) -> dict[str, bytes | None]:
    return {path: None if text is None else base64.b64decode(text) for path, text in files.items()}


@dataclass(frozen=True, slots=True)
class BenchResult:
    """The figures (``None`` when a run failed: then ``error`` and the ``side`` it failed on), how many looks the
    adaptive runs took, and the test's decision at the last look (``None``: it could not tell, or no test)."""

    figures: BenchFigures | None
    looks: int = 0
    decision: Decision | None = None
    error: str | None = None
    side: str | None = None

    def raise_error(self) -> BenchFigures:
        """The figures, or the run's :class:`BenchmarkError` raised here."""
        if self.figures is None:
            raise BenchmarkError(self.error or "the benchmark failed", self.side or "before")
        return self.figures

    def to_dict(self) -> dict[str, Any]:
        f = self.figures
        packed = None if f is None else {"script": f.script, "before": f.before, "after": f.after}
        return {
            "figures": packed, "looks": self.looks, "decision": self.decision, "error": self.error, "side": self.side,
        }  # fmt: skip

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BenchResult:
        packed = data.get("figures")
        figures = None if packed is None else BenchFigures(str(packed["script"]), list(packed["before"]),
                                                            list(packed["after"]))  # fmt: skip
        return cls(figures, int(data.get("looks", 0)), data.get("decision"), data.get("error"), data.get("side"))


@dataclass(frozen=True, slots=True)
class BenchmarkJob:
    """``script`` on the files ``before`` and ``after`` (path -> base64 bytes; ``None``: absent before), ``sizes``
    runs per side at each look. Without ``rule``: ``sizes[0]`` interleaved runs, no warm-up. With it (see
    :class:`generators.measure.stats.Rule`): a warm-up, then adaptive looks judged with ``goal`` at ``level``."""

    script: str
    before: dict[str, str | None]
    after: dict[str, str | None]
    sizes: list[int]
    timeout: float
    rule: dict[str, Any] | None = None
    goal: str = "improve"
    level: float = 0.9

    @classmethod
    def of(
        cls,
        script: str,
        before: Mapping[str, bytes | None],
        after: Mapping[str, bytes],
        *,
        sizes: list[int],
        timeout: float,
        rule: Rule | None = None,
        goal: Goal = "improve",
        level: float = 0.9,
    ) -> BenchmarkJob:
        packed_rule = None if rule is None else asdict(rule)
        return cls(script, _pack(before), _pack(after), sizes, timeout, packed_rule, goal, level)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BenchmarkJob:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})

    def run(self, workspace: Path, config: ValidationConfig) -> BenchResult:
        """Run here (blocking): the figures, or the failure as the result."""
        before = _unpack(self.before)
        after = {path: data for path, data in _unpack(self.after).items() if data is not None}
        try:
            if self.rule is None:
                figures = run_interleaved(workspace, self.script, before, after, runs=self.sizes[0],
                                          timeout=self.timeout, config=config)  # fmt: skip
                return BenchResult(figures, 1)
            rule, goal, level, last = Rule(**self.rule), cast(Goal, self.goal), self.level, len(self.sizes)
            decided: dict[int, Decision] = {}

            def enough(bench: BenchFigures, look: int) -> bool:
                found = judge(shift(bench.before, bench.after, level), rule, goal=goal, final=look == last)
                if found is not None:
                    decided[look] = found
                return found is not None

            figures, looks = run_adaptive(workspace, self.script, before, after, sizes=self.sizes, enough=enough,
                                          timeout=self.timeout, config=config)  # fmt: skip
            return BenchResult(figures, looks, decided.get(looks))
        except BenchmarkError as exc:
            return BenchResult(None, error=str(exc), side=exc.side)


class Benchmarks(Protocol):
    """Where benchmark jobs run (blocking: called from worker threads)."""

    def run(self, job: BenchmarkJob) -> BenchResult: ...


class LocalBenchmarks:
    """In this process, in the caller's thread (as before there were workers)."""

    def __init__(self, workspace: Path, config: ValidationConfig) -> None:
        self.workspace = workspace
        self.config = config

    def run(self, job: BenchmarkJob) -> BenchResult:
        return job.run(self.workspace, self.config)
