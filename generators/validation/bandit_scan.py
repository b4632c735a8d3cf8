"""Bandit, when it is installed, run as a subprocess over the changed files; skipped with a note otherwise."""

from __future__ import annotations

import importlib.util
import json
import logging
import subprocess
import sys
import tempfile
from pathlib import Path

from generators.validation.models import Finding, Severity, StageOutcome

logger = logging.getLogger(__name__)

# assert_used: asserts are how tests are written; the policy stage covers the rest more precisely.
SKIPPED_TESTS = ("B101",)


def bandit_available() -> bool:
    """True when ``bandit`` can be found in this environment (nothing is imported)."""
    return importlib.util.find_spec("bandit") is not None


def run_bandit(sources: dict[str, str], timeout_s: float, scratch_dir: Path | None = None) -> StageOutcome:
    """Bandit's findings on ``sources`` (path → text), written to a folder in ``scratch_dir`` (the system temp folder
    by default): high severity with medium or high confidence fail the stage, the rest are warnings."""
    if not sources:
        return StageOutcome(note="bandit: no Python files")
    if not bandit_available():
        return StageOutcome(note="bandit not installed: skipped", skipped=True)
    with tempfile.TemporaryDirectory(prefix="validate-bandit-", dir=scratch_dir) as tmp:
        root = Path(tmp)
        for rel, text in sources.items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_text(text, encoding="utf-8")
        command = [sys.executable, "-m", "bandit", "-q", "-f", "json", "-r", ".", "-s", ",".join(SKIPPED_TESTS)]
        try:
            done = subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=timeout_s, check=False)
        except subprocess.TimeoutExpired:
            return StageOutcome(note=f"bandit timed out after {timeout_s:g} s: skipped", skipped=True)
    try:
        results = json.loads(done.stdout)["results"]
    except (ValueError, KeyError, TypeError):
        logger.warning("bandit gave no JSON report (exit %s): %s", done.returncode, done.stderr[-500:])
        return StageOutcome(note="bandit failed to report: skipped", skipped=True)
    findings = [_finding(item) for item in results]
    return StageOutcome(findings, note=f"bandit: {len(findings)} finding(s)")


def _finding(item: dict[str, object]) -> Finding:
    path = str(item.get("filename", "?")).removeprefix("./")
    high = item.get("issue_severity") == "HIGH" and item.get("issue_confidence") in {"HIGH", "MEDIUM"}
    severity: Severity = "error" if high else "warning"
    line = item.get("line_number")
    return Finding(
        path,
        line if isinstance(line, int) else 0,
        str(item.get("issue_text", "")),
        f"bandit:{item.get('test_id', '?')}",
        severity,
    )
