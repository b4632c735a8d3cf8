"""What the pipeline reports: findings, one result per stage, and the whole report (as a dict or compact text)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from generators.validation.jail import Jail

StageName = Literal["syntax", "imports", "security", "types", "quality", "tenancy", "tests"]
STAGES: tuple[StageName, ...] = ("syntax", "imports", "security", "types", "quality", "tenancy", "tests")
StageStatus = Literal["passed", "failed", "skipped"]
Severity = Literal["error", "warning"]
Detail = str | int | float | bool | None


@dataclass(frozen=True, slots=True)
class Finding:
    """One problem at ``path:line`` (line 0 when unknown); ``error`` findings fail their stage."""

    path: str
    line: int
    message: str
    rule: str
    severity: Severity = "error"

    def render(self) -> str:
        """One line: ``path:line: [rule] message`` (``warning`` marked)."""
        mark = "" if self.severity == "error" else " (warning)"
        return f"{self.path}:{self.line}: [{self.rule}]{mark} {self.message}"


@dataclass(frozen=True, slots=True)
class StageOutcome:
    """What a stage function returns; the pipeline adds the name, status and duration."""

    findings: list[Finding] = field(default_factory=list)
    note: str = ""
    skipped: bool = False
    details: Mapping[str, Detail] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class StageResult:
    """One stage's verdict with its findings, a note (why skipped, what was checked) and its duration."""

    name: StageName
    status: StageStatus
    duration_ms: float
    findings: list[Finding] = field(default_factory=list)
    note: str = ""
    details: Mapping[str, Detail] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ValidationReport:
    """Every requested stage in order; ``passed`` when none failed."""

    stages: list[StageResult]
    duration_ms: float

    @property
    def passed(self) -> bool:
        """True when no stage failed (skipped stages do not fail the report)."""
        return all(stage.status != "failed" for stage in self.stages)

    def stage(self, name: StageName) -> StageResult:
        """The result of stage ``name``; ``KeyError`` when it was not requested."""
        for result in self.stages:
            if result.name == name:
                return result
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: ``passed``, ``duration_ms`` and the stages with their findings."""
        data = dataclasses.asdict(self)
        data["passed"] = self.passed
        for stage in data["stages"]:
            stage["details"] = dict(stage["details"])
        return data

    def render(self, max_findings: int = 20, max_output: int = 2000) -> str:
        """Compact text for an LLM: a verdict line, then per stage its status and up to ``max_findings`` findings."""
        verdict = "PASSED" if self.passed else "FAILED"
        lines = [f"validation {verdict} in {self.duration_ms:.0f} ms"]
        for stage in self.stages:
            head = f"- {stage.name}: {stage.status} ({stage.duration_ms:.0f} ms)"
            lines.append(f"{head}: {stage.note}" if stage.note else head)
            shown = [f for f in stage.findings if f.severity == "error"] + [
                f for f in stage.findings if f.severity != "error"
            ]
            lines.extend(f"    {finding.render()}" for finding in shown[:max_findings])
            if len(shown) > max_findings:
                lines.append(f"    ... {len(shown) - max_findings} more findings")
            output = stage.details.get("output_tail")
            if stage.status == "failed" and isinstance(output, str) and output:
                lines.append("    output (tail):")
                lines.extend(f"    | {line}" for line in output[-max_output:].splitlines())
        return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class ValidationConfig:
    """Thresholds and limits. Defaults fail only gross cases; everything else is reported as a warning."""

    complexity_warn: int = 10
    complexity_fail: int = 25
    length_warn: int = 60
    length_fail: int = 150
    component_roots: tuple[str, ...] = ("components",)
    source_roots: tuple[str, ...] = ("",)
    shared_component_packages: frozenset[str] = frozenset({"shared", "common"})
    network_component_types: frozenset[str] = frozenset({"network", "http_client", "api_client", "integration"})
    mypy_timeout_s: float = 60.0
    mypy_cache_dir: Path | None = None
    mypy_persistent: bool = False  # keep one mypy process up between checks (the server does)
    scratch_dir: Path | None = None  # where sandbox copies go (the server's ScratchArea); None: the system temp folder
    bandit_timeout_s: float = 60.0
    test_timeout_s: float = 120.0
    min_coverage_percent: float = 80.0  # line coverage of the changed lines the change's tests must reach
    test_memory_bytes: int = 1 << 30
    test_cpu_seconds: int = 120
    test_file_size_bytes: int = 256 << 20
    max_output_chars: int = 8000
    jail: Jail = field(default_factory=Jail)  # where generated code runs (tests, benchmarks): bubblewrap by default
    sandbox_ignore: tuple[str, ...] = (
        ".git",
        ".hg",
        ".venv",
        "venv",
        ".tox",
        "__pycache__",
        ".mypy_cache",
        ".pytest_cache",
        ".ruff_cache",
        "node_modules",
    )
