"""A component's benchmark, run on the code before and after a change, interleaved.

Convention: the benchmark of ``components/[<tenant>/]<name>.py`` is ``benchmarks/[<tenant>/]bench_<name>.py`` in the
workspace; it prints a figure where **lower is better** (seconds, milliseconds), and the last number on its stdout is
taken (stderr is kept apart). Both versions run in their own copy of the workspace (the same sandbox environment and
resource limits as the test stage), alternating before/after/after/before..., so a machine that gets busier halfway
hurts both sides alike.
The medians are compared.
"""

from __future__ import annotations

import os
import re
import shutil
import statistics
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

from generators.validation.models import ValidationConfig
from generators.validation.sandbox import copy_ignore, limited_command, sandbox_env, wait_or_kill

_NUMBER = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?")


class BenchmarkError(Exception):
    """The benchmark failed, timed out or printed no figure; ``side`` says on which code (before or after)."""

    def __init__(self, message: str, side: str) -> None:
        super().__init__(message)
        self.side = side


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
    config = config or ValidationConfig()
    with tempfile.TemporaryDirectory(
        prefix="improve-bench-", dir=config.scratch_dir, ignore_cleanup_errors=True
    ) as tmp:
        sides = {"before": Path(tmp) / "before", "after": Path(tmp) / "after"}
        for name, files in (("before", before), ("after", after)):
            _materialise(workspace, sides[name], files, copy_ignore(config))
        home = Path(tmp) / "home"
        home.mkdir()
        samples: dict[str, list[float]] = {"before": [], "after": []}
        for index in range(runs):
            order = ("before", "after") if index % 2 == 0 else ("after", "before")
            for name in order:
                samples[name].append(_run_once(sides[name], home, script, timeout, config, name))
    return BenchFigures(script, samples["before"], samples["after"])


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
    """One run under the test sandbox's limits; the figure is the last number on stdout (stderr kept apart)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        process = subprocess.Popen(
            limited_command(config, _RUN_SCRIPT, [script]),
            cwd=root,
            env=sandbox_env(root, home),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            start_new_session=True,
        )
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
sys.argv = sys.argv[4:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""
