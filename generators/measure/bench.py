"""A component's benchmark, run on the code before and after a change, interleaved.

Convention: the benchmark of ``components/[<tenant>/]<name>.py`` is ``benchmarks/[<tenant>/]bench_<name>.py`` in the
workspace; it prints a figure where **lower is better** (seconds, milliseconds), and the last number on its stdout is
taken (stderr is kept apart). Both versions run in their own copy of the workspace (the same sandbox environment and
resource limits as the test stage), alternating before/after/after/before..., so a machine that gets busier halfway
hurts both sides alike. Each side runs once first, unmeasured (imports compiled, files cached), so the first measured
run of neither side pays for a cold start. :func:`run_adaptive` adds runs, still interleaved, until the caller's
test can tell (see :mod:`generators.measure.stats`).
"""

from __future__ import annotations

import os
import re
import shutil
import statistics
import subprocess
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

from generators.errors import BenchmarkError
from generators.validation.models import ValidationConfig
from generators.validation.sandbox import copy_ignore, jail_refusal, limited_command, sandbox_env, wait_or_kill

_NUMBER = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?")


@dataclass(frozen=True, slots=True)
class BenchFigures:
    """Medians and every sample of both sides; ``change_percent`` is after against before (positive = slower)."""

    script: str
    before: list[float]
    after: list[float]

    @property
    def before_median(self) -> float:
        return statistics.median(self.before)

    @property
    def after_median(self) -> float:
        return statistics.median(self.after)

    @property
    def change_percent(self) -> float:
        base = self.before_median
        return 0.0 if base == 0 else 100.0 * (self.after_median - base) / abs(base)

    def to_dict(self) -> dict[str, object]:
        return {
            "script": self.script,
            "before_median": round(self.before_median, 6),
            "after_median": round(self.after_median, 6),
            "change_percent": round(self.change_percent, 2),
            "before": [round(v, 6) for v in self.before],
            "after": [round(v, 6) for v in self.after],
            "lower_is_better": True,
        }


def find_benchmark(workspace: Path, module_path: str, component_root: str = "components") -> str | None:
    """The workspace-relative benchmark script of a component module, or ``None``."""
    module = PurePosixPath(module_path)
    inner = module.relative_to(component_root) if module.is_relative_to(component_root) else module
    candidate = PurePosixPath("benchmarks", *inner.parent.parts, f"bench_{module.stem}.py")
    return candidate.as_posix() if (workspace / candidate).is_file() else None


def run_interleaved(
    workspace: Path,
    script: str,
    before: Mapping[str, bytes | None],
    after: Mapping[str, bytes],
    *,
    runs: int,
    timeout: float,
    config: ValidationConfig | None = None,
) -> BenchFigures:
    """Run ``script`` ``runs`` times on each version of the changed files (``None``: the file did not exist).

    Raises:
        BenchmarkError: a run failed, timed out, or printed no number.
    """
    with _Sides(workspace, before, after, config or ValidationConfig()) as sides:
        return sides.run(script, runs, timeout, BenchFigures(script, [], []))


def run_adaptive(
    workspace: Path,
    script: str,
    before: Mapping[str, bytes | None],
    after: Mapping[str, bytes],
    *,
    sizes: Sequence[int],
    enough: Callable[[BenchFigures, int], bool],
    timeout: float,
    config: ValidationConfig | None = None,
) -> tuple[BenchFigures, int]:
    """After a warm-up run of each side, run both sides up to ``sizes[0]`` times each, then up to each next size in
    turn until ``enough(figures, look)`` (``look`` counts from 1) or the sizes run out; returns the figures and the
    number of looks taken.

    Raises:
        BenchmarkError: a run failed, timed out, or printed no number.
    """
    with _Sides(workspace, before, after, config or ValidationConfig()) as sides:
        sides.warm_up(script, timeout)
        figures = BenchFigures(script, [], [])
        look = 0
        for look, size in enumerate(sizes, start=1):
            figures = sides.run(script, size - len(figures.before), timeout, figures)
            if enough(figures, look):
                break
        return figures, look


class _Sides:
    """Both versions of the workspace, each in its own copy with its own home folder, for the length of a ``with``.
    A run may write only its own side's copy and home: the new code cannot touch the old code's figures."""

    def __init__(
        self, workspace: Path, before: Mapping[str, bytes | None], after: Mapping[str, bytes], config: ValidationConfig
    ) -> None:
        self._workspace = workspace
        self._files = {"before": before, "after": after}
        self._config = config
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._roots: dict[str, Path] = {}
        self._homes: dict[str, Path] = {}

    def __enter__(self) -> _Sides:
        self._tmp = tempfile.TemporaryDirectory(
            prefix="improve-bench-", dir=self._config.scratch_dir, ignore_cleanup_errors=True
        )
        try:
            tmp = Path(self._tmp.name)
            for name, files in self._files.items():
                self._roots[name] = tmp / name
                _materialise(self._workspace, self._roots[name], files, copy_ignore(self._config))
            for name in self._files:
                self._homes[name] = tmp / f"home-{name}"
                self._homes[name].mkdir()
            self._config.jail.prepare(tmp)
        except BaseException:
            self._tmp.cleanup()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()

    def warm_up(self, script: str, timeout: float) -> None:
        for name in ("before", "after"):
            self._once(script, timeout, name)

    def run(self, script: str, runs: int, timeout: float, figures: BenchFigures) -> BenchFigures:
        """``figures`` with ``runs`` more runs of each side, the order alternating as the run count goes on."""
        samples = {"before": list(figures.before), "after": list(figures.after)}
        for index in range(len(samples["before"]), len(samples["before"]) + max(0, runs)):
            order = ("before", "after") if index % 2 == 0 else ("after", "before")
            for name in order:
                samples[name].append(self._once(script, timeout, name))
        return BenchFigures(script, samples["before"], samples["after"])

    def _once(self, script: str, timeout: float, side: str) -> float:
        return _run_once(self._roots[side], self._homes[side], script, timeout, self._config, side)


def _materialise(workspace: Path, dest: Path, files: Mapping[str, bytes | None], ignore: tuple[str, ...]) -> None:
    shutil.copytree(workspace, dest, symlinks=True, ignore=shutil.ignore_patterns(*ignore))
    for rel, content in files.items():
        target = dest / rel
        if not target.parent.resolve().is_relative_to(dest.resolve()):
            raise BenchmarkError(f"{rel} lies behind a symlink out of the workspace copy", "before")
        target.unlink(missing_ok=True)  # a symlink is replaced, never written through
        if content is not None:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)


def _run_once(root: Path, home: Path, script: str, timeout: float, config: ValidationConfig, side: str) -> float:
    """One run under the test sandbox's limits, in its jail (its copy and its home the folders it may write); the
    figure is the last number on stdout (stderr kept apart)."""
    refused = jail_refusal(config)
    if refused is not None:
        raise BenchmarkError(f"benchmark {script} not run: {refused}", side)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, config.jail.lifeline() as lifeline:
        process = subprocess.Popen(
            limited_command(config, _RUN_SCRIPT, [script], root, [root, home], lifeline),
            cwd=root,
            env=sandbox_env(root, home),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            start_new_session=True,
            pass_fds=lifeline.fds,
        )
        lifeline.started()
        timed_out = wait_or_kill(process, timeout)
        text, errors = _tail(out), _tail(err)
    if timed_out:
        raise BenchmarkError(f"benchmark {script} did not finish within {timeout:g} s on the {side} code", side)
    if process.returncode != 0:
        raise BenchmarkError(
            f"benchmark {script} exited with {process.returncode} on the {side} code: {(errors or text)[-500:]}", side
        )
    numbers = _NUMBER.findall(text)
    if not numbers:
        raise BenchmarkError(f"benchmark {script} printed no figure on the {side} code: {text[-500:]}", side)
    return float(numbers[-1])


def _tail(handle: IO[bytes]) -> str:
    """The last :data:`TAIL_BYTES` of a captured stream (a benchmark may print without end)."""
    size = handle.seek(0, os.SEEK_END)
    handle.seek(max(0, size - TAIL_BYTES))
    return handle.read().decode("utf-8", errors="replace")


TAIL_BYTES = 20_000
# Under the test sandbox's limits: the script as __main__, with the workspace copy first on sys.path (-I drops
# PYTHONPATH).
_RUN_SCRIPT = """
import runpy
sys.path.insert(0, os.getcwd())
sys.argv = args
runpy.run_path(sys.argv[0], run_name="__main__")
"""
