"""Stage 4: ``mypy --strict`` on the changed files that carry annotations, in a subprocess with a timeout.

mypy runs over a symlinked view of the changed workspace, so imports of unchanged modules are followed (silently)
while only the changed files are reported.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from generators.validation.models import Finding, Severity, StageOutcome, ValidationConfig
from generators.validation.mypy_worker import MypyResult, MypyTimeout, MypyWorker
from generators.validation.overlay import Overlay

_LINE = re.compile(
    r"^(?P<path>[^:\n]+):(?P<line>\d+):(?:\d+:)? (?P<kind>error|warning): (?P<msg>.*?)(?:  \[(?P<code>[\w-]+)\])?$"
)
_TIMED_OUT = "mypy timed out"


def has_annotations(tree: ast.Module) -> bool:
    """True when the module annotates a function's parameters or return, or a variable."""
    for node in ast.walk(tree):
        if isinstance(node, ast.AnnAssign):
            return True
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            params = [*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs, node.args.vararg, node.args.kwarg]
            if node.returns is not None or any(p is not None and p.annotation is not None for p in params):
                return True
    return False


def mypy_args(files: list[str], cache_dir: Path | None) -> list[str]:
    """mypy's arguments: strict, no config file, missing imports left to the imports stage."""
    cache = ["--cache-dir", str(cache_dir)] if cache_dir is not None else ["--cache-dir", "/dev/null"]
    return [
        "--strict",
        "--config-file",
        "",
        "--ignore-missing-imports",
        "--explicit-package-bases",
        "--follow-imports",
        "silent",
        "--show-error-codes",
        "--no-error-summary",
        "--no-pretty",
        "--no-color-output",
        "--hide-error-context",
        *cache,
        "--",
        *files,
    ]


def mypy_command(files: list[str], cache_dir: Path | None) -> list[str]:
    """The command line of a one-off mypy process."""
    return [sys.executable, "-m", "mypy", *mypy_args(files, cache_dir)]


def check_types(overlay: Overlay, config: ValidationConfig, worker: MypyWorker | None = None) -> StageOutcome:
    """mypy's errors in the annotated changed files; skipped with a note when none is annotated or mypy is missing.

    With a ``worker`` mypy runs in that long-lived process, else in a new one.
    """
    files = [path for path, tree in overlay.parsed_sources() if has_annotations(tree)]
    if not files:
        return StageOutcome(note="no annotated Python files: skipped", skipped=True)
    if importlib.util.find_spec("mypy") is None:
        return StageOutcome(note="mypy is not installed: skipped", skipped=True)
    with tempfile.TemporaryDirectory(prefix="validate-mypy-", dir=config.scratch_dir) as tmp:
        root = Path(tmp) / "ws"
        overlay.link_tree(root)
        mypypath = os.pathsep.join(str(root / r) for r in config.source_roots)
        try:
            done = _run(files, root, mypypath, config, worker)
        except (subprocess.TimeoutExpired, MypyTimeout):
            message = f"{_TIMED_OUT} after {config.mypy_timeout_s:g} s; simplify the module or raise mypy_timeout_s"
            return StageOutcome([Finding(files[0], 0, message, "TYP000")], note=_TIMED_OUT)
        except OSError as exc:
            return StageOutcome([Finding(files[0], 0, f"mypy failed to run: {exc}", "TYP000")], note="mypy crashed")
    findings = parse_mypy(done.stdout, set(files))
    if done.code not in (0, 1) or (done.code == 1 and not findings):
        tail = (done.stderr or done.stdout)[-500:]
        return StageOutcome([Finding(files[0], 0, f"mypy failed to run: {tail}", "TYP000")], note="mypy crashed")
    return StageOutcome(findings, note=f"mypy --strict on {len(files)} file(s)")


def _run(
    files: list[str], root: Path, mypypath: str, config: ValidationConfig, worker: MypyWorker | None
) -> MypyResult:
    if worker is not None:
        return worker.run(mypy_args(files, config.mypy_cache_dir), str(root), mypypath, config.mypy_timeout_s)
    env = {**os.environ, "MYPYPATH": mypypath}
    done = subprocess.run(
        mypy_command(files, config.mypy_cache_dir),
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=config.mypy_timeout_s,
        check=False,
    )
    return MypyResult(done.returncode, done.stdout, done.stderr)


def parse_mypy(output: str, files: set[str]) -> list[Finding]:
    """Findings from mypy's ``path:line: error: message  [code]`` lines, limited to ``files``."""
    findings = []
    for raw in output.splitlines():
        match = _LINE.match(raw.strip())
        if match is None:
            continue
        path = match["path"].replace("\\", "/").removeprefix("./")
        if path in files:
            severity: Severity = "error" if match["kind"] == "error" else "warning"
            rule = f"mypy:{match['code'] or 'misc'}"
            findings.append(Finding(path, int(match["line"]), match["msg"], rule, severity))
    return findings
