"""An error fix must prove itself: the change's own tests, run against the OLD code, must fail there.

An opportunity born of an error pattern in a component's logs (e.g. ``ValueError: not enough values to unpack``) asks
the model for a fix and a test that reproduces the logged failure. Validation has shown the tests pass on the new
code; here they run in the sandbox on the workspace as it is (the old code) with only the change's test files laid
over it. At least one test must fail there (a failure, not a test that cannot even be collected, such as one that
imports a name only the fix adds), and when the logged error names an exception class (``ValueError``), the failure
must show it. Otherwise the change does not prove its fix and is refused before any deployment: a change that only
rewrote annotations, whose tests pass on the old code too, leaves the crash in place.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from generators.codegen.change_rules import tests_home
from generators.validation import ValidationPipeline

NOT_PROVED = "the change does not prove its fix"
_EXCEPTION = re.compile(r"\b([A-Z][A-Za-z0-9_]*(?:Error|Exception))\b")
MAX_OUTPUT_CHARS = 2_000


@dataclass(frozen=True, slots=True)
class Proof:
    """Whether the change's tests reproduce the logged failure on the old code; ``message`` says why not."""

    proved: bool
    message: str
    figures: dict[str, Any] = field(default_factory=dict)


def change_tests(files: Mapping[str, str]) -> list[str]:
    """The change's test modules (``test_*.py``)."""
    return sorted(p for p in files if PurePosixPath(p).name.startswith("test_") and p.endswith(".py"))


def logged_exception(evidence: str) -> str | None:
    """The exception class the logged error names (``ValueError``), if it names one."""
    found = _EXCEPTION.search(evidence)
    return found.group(1) if found else None


def prove_fix(
    pipeline: ValidationPipeline,
    workspace: Path,
    module: str,
    files: Mapping[str, str],
    evidence: str,
    timeout: float | None = None,
) -> Proof:
    """Run the test files of ``files`` (the change of ``module``: path -> new text) on the old code. Blocking (a
    subprocess). A refusal's message says what is missing, and where the test goes."""
    exception = logged_exception(evidence)
    home = tests_home(module, pipeline.config.component_roots)
    todo = (
        f". Add to {home} a test that reproduces the logged failure (it calls the code with the input that raised "
        f"{exception or 'the logged error'}): it must fail on the old code and pass with the fix"
    )
    tests = change_tests(files)
    if not tests:
        return Proof(False, f"{NOT_PROVED}: it has no test that reproduces the logged failure{todo}", {"tests": []})
    report = pipeline.run(workspace, {p: files[p] for p in tests}, stages=["tests"], test_paths=tests, timeout=timeout)
    stage = report.stage("tests")
    output = str(stage.details.get("output_tail") or "")
    failed = int(stage.details.get("failed") or 0)
    figures: dict[str, Any] = {
        "tests": tests,
        "on_old_code": stage.note,
        "failed_on_old_code": failed,
        "output_tail": output[-MAX_OUTPUT_CHARS:],
    }
    if failed == 0:
        why = "no test fails on the old code"
        if int(stage.details.get("error") or 0):
            why += " (a test that cannot be collected there, e.g. one importing a name the fix adds, proves nothing)"
        return Proof(False, f"{NOT_PROVED}: {why} ({stage.note}){todo}", figures)
    shown = output + "\n".join(f.message for f in stage.findings)
    if exception is not None and exception not in shown:
        figures["expected"] = exception
        why = f"its tests fail on the old code, but not with the logged {exception}"
        return Proof(False, f"{NOT_PROVED}: {why}{todo}", figures)
    return Proof(True, f"{failed} test(s) fail on the old code and pass on the new", figures)
