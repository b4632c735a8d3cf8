"""The validation pipeline: the stages in order over a change laid on a workspace, one report at the end."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from generators.errors import ValidationInputError
from generators.validation.bandit_scan import run_bandit
from generators.validation.imports import check_imports
from generators.validation.models import (
    STAGES,
    StageName,
    StageOutcome,
    StageResult,
    StageStatus,
    ValidationConfig,
    ValidationReport,
)
from generators.validation.mypy_worker import MypyWorker
from generators.validation.overlay import Overlay
from generators.validation.quality import check_quality
from generators.validation.sandbox import run_tests
from generators.validation.security import check_policy, security_outcome
from generators.validation.syntax import check_syntax
from generators.validation.tenancy import check_tenancy
from generators.validation.typecheck import check_types

logger = logging.getLogger(__name__)

# Stages that are not run after a failure of any of these earlier ones (reported as skipped).
BLOCKED_BY: dict[StageName, tuple[StageName, ...]] = {
    "types": ("syntax",),
    # Code the policy flagged is never executed, not even in the sandbox.
    "tests": ("syntax", "imports", "security", "tenancy"),
}


@dataclass(frozen=True, slots=True)
class _Request:
    overlay: Overlay
    allow_network: bool
    tenant: str | None
    test_paths: list[str]
    timeout_s: float
    extra_env: Mapping[str, str] | None
    subjects: Mapping[str, Collection[int]] | None


class ValidationPipeline:
    """Validates a proposed change (relative path → new content) against a workspace, which it never modifies."""

    def __init__(self, config: ValidationConfig | None = None) -> None:
        self.config = config or ValidationConfig()
        self._mypy = MypyWorker() if self.config.mypy_persistent else None
        self._executor: ThreadPoolExecutor | None = None
        self._stages: dict[StageName, Callable[[_Request], StageOutcome]] = {
            "syntax": lambda r: check_syntax(r.overlay),
            "imports": lambda r: check_imports(r.overlay, self.config),
            "security": self._security,
            "types": lambda r: check_types(r.overlay, self.config, self._mypy),
            "quality": lambda r: check_quality(r.overlay.parsed_sources(), self.config),
            "tenancy": self._tenancy,
            "tests": lambda r: run_tests(r.overlay, self.config, r.test_paths, r.timeout_s, r.extra_env, r.subjects),
        }

    def close(self) -> None:
        """Stop the long-lived mypy process, if one runs."""
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        if self._mypy is not None:
            self._mypy.close()

    def run(
        self,
        workspace: Path,
        change: Mapping[str, str],
        *,
        stages: Collection[StageName] | None = None,
        component_type: str | None = None,
        tenant: str | None = None,
        test_paths: Sequence[str] = (),
        timeout: float | None = None,
        extra_env: Mapping[str, str] | None = None,
        subjects: Mapping[str, Collection[int]] | None = None,
    ) -> ValidationReport:
        """Run the requested ``stages`` (all by default) in pipeline order and return the report.

        Network access is allowed when ``component_type`` is one of ``config.network_component_types``.
        ``timeout`` bounds the test run (default ``config.test_timeout_s``); ``extra_env`` adds variables to the
        test environment, minus anything that looks like a secret or proxy. ``subjects`` (module path → changed line
        numbers) make tests required: they must import and cover those lines (see ``sandbox.run_tests``).

        Raises:
            ValidationInputError: the workspace is not a folder, a change path is absolute or escapes it, a content
                is not text, or a stage name is unknown.
        """
        started = time.perf_counter()
        wanted = set(STAGES if stages is None else stages)
        unknown = wanted - set(STAGES)
        if unknown:
            raise ValidationInputError(f"unknown validation stage(s) {sorted(unknown)}; choose from {list(STAGES)}")
        request = _Request(
            overlay=Overlay(workspace, change),
            allow_network=component_type in self.config.network_component_types,
            tenant=tenant,
            test_paths=list(test_paths),
            timeout_s=self.config.test_timeout_s if timeout is None else timeout,
            extra_env=extra_env,
            subjects=subjects,
        )
        results: list[StageResult] = []
        types: Future[StageResult] | None = None
        for name in (s for s in STAGES if s in wanted):
            if types is None and "types" in wanted and name != "syntax":
                types = self._start_types(request, results)
            if name == "tests" and types is not None:  # collect the type check before the slow stage
                results = _with_types(results, types.result())
                types = None
            failed = [r.name for r in results if r.status == "failed" and r.name in BLOCKED_BY.get(name, ())]
            if failed:
                results.append(StageResult(name, "skipped", 0.0, note=f"not run: {', '.join(failed)} failed"))
            elif name != "types" or types is None:
                results.append(self._run_stage(name, request))
        if types is not None:
            results = _with_types(results, types.result())
        report = ValidationReport(results, round((time.perf_counter() - started) * 1000, 2))
        logger.info("validated %d file(s): %s", len(request.overlay.change), "passed" if report.passed else "failed")
        return report

    def _start_types(self, request: _Request, results: list[StageResult]) -> Future[StageResult] | None:
        """With the long-lived mypy worker, the type check runs alongside the other stages after syntax (its thread
        waits on another process); its result takes its place in the report in stage order. No stage depends on it."""
        if self._mypy is None or any(r.name == "syntax" and r.status == "failed" for r in results):
            return None
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="validate-types")
        request.overlay.parsed_sources()  # parse here, once, before two threads read the overlay
        return self._executor.submit(self._run_stage, "types", request)

    def _run_stage(self, name: StageName, request: _Request) -> StageResult:
        started = time.perf_counter()
        outcome = self._stages[name](request)
        duration = round((time.perf_counter() - started) * 1000, 2)
        status: StageStatus
        if outcome.skipped:
            status = "skipped"
        elif any(f.severity == "error" for f in outcome.findings):
            status = "failed"
        else:
            status = "passed"
        return StageResult(name, status, duration, outcome.findings, outcome.note, outcome.details)

    def _security(self, request: _Request) -> StageOutcome:
        sources = request.overlay.parsed_sources()
        findings = check_policy(sources, str(request.overlay.workspace), request.allow_network)
        texts = {path: request.overlay.change[path] for path, _ in sources}
        bandit = run_bandit(texts, self.config.bandit_timeout_s, self.config.scratch_dir)
        return security_outcome(findings, bandit, request.allow_network)

    def _tenancy(self, request: _Request) -> StageOutcome:
        overlay = request.overlay
        return check_tenancy(
            overlay.parsed_sources(), sorted(overlay.change), self.config, request.tenant, overlay.is_dir
        )


def _with_types(results: list[StageResult], types: StageResult) -> list[StageResult]:
    """``results`` with the type stage's result in its place in pipeline order."""
    merged = [*results, types]
    return sorted(merged, key=lambda r: STAGES.index(r.name))
