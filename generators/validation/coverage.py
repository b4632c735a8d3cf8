"""Line coverage of the changed lines, measured by coverage.py around the sandboxed pytest run.

A change's *changed lines* are the lines of a module that are new or differ from its previous text (every line of a
new module). They count as the statements coverage.py finds on them: a changed line inside a multi-line statement
counts as that statement, a blank, comment or docstring line counts as nothing. ``# pragma: no cover`` is not
honoured: generated code may not exempt itself. The tests pass the stage only when they run at least
``ValidationConfig.min_coverage_percent`` of the changed statements of all the change's modules together; the
findings name the lines they do not run, per module.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path

from coverage import CoverageData
from coverage.exceptions import CoverageException
from coverage.parser import PythonParser

from generators.validation.models import Detail, Finding

__all__ = ["ModuleCoverage", "changed_lines", "coverage_args", "coverage_outcome", "line_ranges", "measure"]

# Runs pytest under coverage.py; its arguments (``coverage run`` options, then ``-m pytest ...``) are ``args``.
COVERAGE_PYTEST = 'os.execv(sys.executable, [sys.executable, "-m", "coverage", "run", *args])\n'


@dataclass(frozen=True, slots=True)
class ModuleCoverage:
    """One module: its changed statements (by first line) and those the tests did not run."""

    path: str
    changed: tuple[int, ...]
    missed: tuple[int, ...]


def changed_lines(before: str | None, after: str) -> frozenset[int]:
    """Line numbers (from 1) of ``after`` that are new or differ from ``before``; every line when ``before`` is None."""
    new = after.splitlines()
    if before is None:
        return frozenset(range(1, len(new) + 1))
    lines: set[int] = set()
    matcher = difflib.SequenceMatcher(None, before.splitlines(), new, autojunk=False)
    for tag, _, _, first, last in matcher.get_opcodes():
        if tag in ("replace", "insert"):
            lines.update(range(first + 1, last + 1))
    return frozenset(lines)


def coverage_args(workdir: Path, root: Path, subjects: Collection[str]) -> list[str]:
    """``coverage run`` options: data in ``workdir`` (outside the copy), only ``subjects`` measured, and an empty
    configuration file so that none of the workspace's own settings (omit, exclude) apply."""
    rcfile = workdir / "coveragerc"
    rcfile.write_text("", encoding="utf-8")
    include = ",".join(str(root / path) for path in sorted(subjects))
    options = [f"--rcfile={rcfile}", f"--data-file={workdir / 'coverage.data'}"]
    return [*options, *([f"--include={include}"] if include else []), "-m", "pytest"]


def measure(
    workdir: Path, root: Path, subjects: Mapping[str, Collection[int]], texts: Mapping[str, str]
) -> list[ModuleCoverage]:
    """Per module of ``subjects`` (path → changed line numbers), its changed statements and those not run, from the
    data ``coverage run`` left in ``workdir`` for the copy at ``root``."""
    data = CoverageData(basename=str(workdir / "coverage.data"))
    found = workdir / "coverage.data"
    if found.is_file() and not found.is_symlink():  # written in the jail: never followed out of it
        data.read()
    measured = {os.path.realpath(name): name for name in data.measured_files()}
    result = []
    for path in sorted(subjects):
        parser = PythonParser(text=texts[path])
        try:
            parser.parse_source()
        except (CoverageException, SyntaxError, ValueError):
            continue  # the syntax stage reports it; the tests never run then
        changed = {parser.first_line(line) for line in subjects[path]} & parser.statements
        recorded = measured.get(os.path.realpath(root / path))
        ran = parser.translate_lines(data.lines(recorded) or []) if recorded else set()
        result.append(ModuleCoverage(path, tuple(sorted(changed)), tuple(sorted(changed - ran))))
    return result


def coverage_outcome(modules: list[ModuleCoverage], required: float) -> tuple[list[Finding], dict[str, Detail]]:
    """Findings for lines the tests do not run (errors below ``required`` percent, else warnings) and the figures."""
    changed = sum(len(m.changed) for m in modules)
    missed = sum(len(m.missed) for m in modules)
    percent = 100.0 if changed == 0 else round(100.0 * (changed - missed) / changed, 1)
    short = percent < required
    findings = []
    for module in modules:
        if module.missed:
            lines = ("line " if len(module.missed) == 1 else "lines ") + line_ranges(module.missed)
            run = len(module.changed) - len(module.missed)
            message = (
                f"the tests do not run {lines} of {module.path} ({run} of {len(module.changed)} changed statements "
                f"run; the change's tests run {percent:g} %, at least {required:g} % needed): add tests that execute "
                f"{lines} of {module.path}"
            )
            findings.append(Finding(module.path, module.missed[0], message, "COV001", "error" if short else "warning"))
    details: dict[str, Detail] = {
        "coverage_percent": percent,
        "coverage_required_percent": required,
        "changed_statements": changed,
        "covered_statements": changed - missed,
    }
    return findings, details


def line_ranges(lines: Collection[int]) -> str:
    """``[3, 4, 5, 9]`` → ``"3-5, 9"``."""
    spans: list[list[int]] = []
    for line in sorted(lines):
        if spans and line == spans[-1][1] + 1:
            spans[-1][1] = line
        else:
            spans.append([line, line])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in spans)
