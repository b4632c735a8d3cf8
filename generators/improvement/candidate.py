"""One candidate of a cycle: improve the component's module with the LLM (validated), then the approval gate, the
deployment, the monitoring period and the verdict (keep, or roll back the exact previous bytes)."""

from __future__ import annotations

import functools
import logging
import re
import uuid
from collections.abc import Callable
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any, Unpack

import anyio
import anyio.to_thread

from generators.clock import Clock
from generators.codegen.rounds import TENANT_ID
from generators.deploy import SYSTEM_TENANT, AuditLog, Deployer, DeployError, Deployment
from generators.deploy.models import sha256_hex
from generators.errors import IllegalTransitionError
from generators.improvement.attempting import (
    SETTLED,
    accept_check,
    archive,
    best_candidate,
    earlier_attempts,
    effect_of,
    failed_message,
    measured_by,
    proof_check,
)
from generators.improvement.attempts import (
    AttemptArchive,
    history_section,
)
from generators.improvement.judging import judge
from generators.improvement.models import (
    CandidateDetail,
    CandidateRecord,
    CandidateStatus,
    CycleConfig,
    MetricFigures,
    check_transition,
)
from generators.improvement.runner import ACTOR, CandidateInputs, Progress
from generators.improvement.store import AsyncCycles, CycleStore
from generators.llm import LLMError

if TYPE_CHECKING:
    from generators.codegen.generation import CodeGenerator
    from generators.codegen.rounds import GenerationResult

logger = logging.getLogger(__name__)
MAX_DIFF_CHARS = 20_000
MAX_REPORT_CHARS = 8_000
MAX_ERROR_CHARS = 2_000
_SAFE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")


class CandidateRunner:
    """Runs candidates; shared by every cycle of the server."""

    def __init__(
        self,
        *,
        store: CycleStore,
        deployer: Deployer,
        audit: AuditLog,
        generator: Callable[[], CodeGenerator],
        figures: MetricFigures,
        config: CycleConfig,
        clock: Clock,
        attempts: AttemptArchive | None = None,
        component_type_of: Callable[[str, str], str | None] = lambda tenant, module: None,
    ) -> None:
        """``attempts`` archives every attempt per component (the next attempt learns from them);
        ``component_type_of`` says what a tenant's module is where that matters to a change (``"tool"``: a tool the
        server serves, whose changes must keep the rules of a tool). Blocking."""
        self.attempts = attempts
        self.component_type_of = component_type_of
        self.store = store
        self.cycles = AsyncCycles(store)  # the store for the event loop
        self.deployer = deployer
        self.audit = audit
        self.generator = generator
        self.figures = figures
        self.config = config
        self.clock = clock

    async def save(self, record: CandidateRecord, status: CandidateStatus, **detail: Unpack[CandidateDetail]) -> None:
        """Record the candidate's new status (a transition :data:`~generators.improvement.models.TRANSITIONS`
        allows, else :class:`~generators.errors.IllegalTransitionError` and nothing is saved) with more detail."""
        check_transition(record, status)
        was, record.status = record.status, status
        record.updated_at = self.clock()
        record.detail.update(detail)
        try:
            await self.cycles.save_candidate(record, was)  # refused if another step moved it meanwhile (a stale copy)
        except IllegalTransitionError:
            record.status = was
            raise
        outcome = SETTLED.get(status)
        if self.attempts is not None and outcome is not None:  # the archived attempt's fate, for the next attempt
            figures = {"effect_percent": effect_of(record.detail), "decision": record.detail.get("decision")}
            why = str(record.detail.get("message") or status)
            call = functools.partial(self.attempts.settle, record.cycle_id, record.position, outcome, why, figures)
            await anyio.to_thread.run_sync(call)

    async def improve_and_deploy(self, record: CandidateRecord, inputs: CandidateInputs) -> bool:
        """Generate, validate, gate and deploy; True when a deployment now needs monitoring."""
        opportunity = inputs.opportunity
        await self.save(record, "generating")
        await inputs.progress("generate", f"{opportunity.component}: asking the model to improve {opportunity.metric}")
        module = await anyio.to_thread.run_sync(self.locate, inputs.tenant, opportunity.component, opportunity.own_code)
        if module is None:
            where = f"components/[{inputs.tenant}/]{opportunity.component}.py"
            await self.skip(
                record, inputs, f"no module for component {opportunity.component!r} in the workspace ({where})"
            )
            return False
        raw = await anyio.to_thread.run_sync((self.deployer.workspace / module).read_bytes)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            await self.skip(record, inputs, f"{module} is not UTF-8 text", module)
            return False
        try:
            result = await best_candidate(self, record, inputs, module, raw, text)
        except LLMError as exc:  # a spend cap reached too: its message names the cap and the setting to raise
            message = f"the LLM could not be asked: {exc}"
            await anyio.to_thread.run_sync(self.audit_generation, inputs, module, None, message)
            await self.save(record, "error", message=message, error_type=type(exc).__name__)
            return False
        record.detail.update(_generation_detail(result))
        if not result.succeeded or result.change is None:
            await self.save(record, "validation_failed", message=failed_message(result))
            return False
        # The verdict judges an error fix on its errors, a metric on the metric.
        record.detail["kind"] = opportunity.kind
        if inputs.dry_run:
            await archive(self, record, inputs, module, result, "dry_run", "validated; dry_run: nothing was deployed")
            await self.save(record, "dry_run", message="validated; dry_run: nothing was deployed")
            return False
        return await self._deploy(record, inputs, module, sha256_hex(raw), result)

    def is_default(self, tenant: str) -> bool:
        """The default tenant's components live in the root folder, not in a tenant folder."""
        return tenant in ("default", self.config.default_tenant)

    def locate(self, tenant: str, component: str, own_code: bool = False) -> str | None:
        """The component's module: a tenant's own folder (the root for the default tenant), then the shared
        packages (whose changes always wait for review). Never another tenant's, nor the root for a tenant. With
        ``own_code`` (an opportunity from the server's self-analysis, never from pushed telemetry) and the default
        tenant, a dotted name (``package.module`` or ``package.module.function``) is also looked up as a module path
        in the workspace: with the server's own source tree as the workspace, cycles can improve the server itself
        (always held for review)."""
        name = component.replace("-", "_")
        if not _SAFE.match(name) or not TENANT_ID.match(tenant):
            return None
        root = "components"
        folders = [root] if self.is_default(tenant) else [f"{root}/{tenant}"]
        folders += [f"{root}/{p}" for p in sorted(self.config.shared_packages)]
        paths = [f"{folder}/{name}.py" for folder in folders]
        if own_code and self.is_default(tenant) and "." in name:  # e.g. tools.performance.analyze_system_performance
            parts = [p for p in name.split(".") if p]
            paths += ["/".join(parts) + ".py", "/".join(parts[:-1]) + ".py"] if len(parts) > 1 else []
        for path in paths:
            if ".." not in path and (self.deployer.workspace / path).is_file():
                return path
        return None

    async def generate(
        self, inputs: CandidateInputs, module: str, text: str, record: CandidateRecord
    ) -> GenerationResult:
        from generators.codegen.change_rules import (
            tests_home,  # the generation modules load on first use, not at start-up
        )
        from generators.codegen.prompts import TOOL_KEPT, Goal
        from generators.codegen.tool_rules import TOOL_TYPE

        opportunity = inputs.opportunity
        gen = self.generator()
        requirements = (
            f"{opportunity.goal} (component {opportunity.component}, metric {opportunity.metric}). "
            f"What the telemetry shows: {opportunity.evidence or 'see the goals'}. Make {module} better on "
            f"{opportunity.metric} without changing its public names or behaviour; its tests must still pass."
        )
        if opportunity.kind == "errors":  # the change is refused unless such a test fails on the old code
            test = tests_home(module, gen.pipeline.config.component_roots)
            requirements = (
                f"{opportunity.goal} (component {opportunity.component}). The logs show errors: "
                f"{opportunity.evidence!r}. Fix "
                f"their cause in {module} without changing its public names; its tests must still pass. Prove the "
                f"fix: add to {test} a test that reproduces the logged failure, calling the code with input that "
                f"raised it; it must fail on the current code with that error and pass with your fix. A change "
                f"without such a test is refused."
            )
        else:  # a metric: say how the change will be judged, with the benchmark that judges it
            requirements += await anyio.to_thread.run_sync(measured_by, self, module)
        goals = [
            Goal(
                opportunity.metric,
                "higher" if opportunity.direction == "down_is_bad" else "lower",
                summary=opportunity.evidence or opportunity.goal,
            )
        ]
        scoped = None if self.is_default(inputs.tenant) else inputs.tenant

        async def rounds(stage: str, number: int, message: str) -> None:
            await inputs.progress(stage, f"{opportunity.component} round {number}: {message}")

        request = {
            "cycle_id": inputs.cycle_id,
            "module": module,
            "goal": opportunity.goal,
            "metric": opportunity.metric,
        }
        await anyio.to_thread.run_sync(
            functools.partial(self.audit.append, "generation_request", module, actor=inputs.requested_by,
                              tenant=inputs.tenant, detail=request)
        )  # fmt: skip
        folder = PurePosixPath(module).parent.as_posix()
        extra = () if module.startswith("components/") or folder == "." else (folder,)  # the server's own code
        component_type = await anyio.to_thread.run_sync(self.component_type_of, inputs.tenant, module)
        if component_type == TOOL_TYPE:
            requirements += TOOL_KEPT.format(name=PurePosixPath(module).stem)
        earlier = await earlier_attempts(self, inputs.tenant, opportunity.component)
        requirements += history_section(earlier)
        proof = proof_check(self, module, opportunity.evidence, record) if opportunity.kind == "errors" else None
        accept = accept_check(module, earlier, proof)
        return await gen.improve(
            {module: text}, requirements, goals=goals, tenant_id=scoped, progress=rounds, extra_roots=extra,
            accept=accept, component_type=component_type,
        )  # fmt: skip

    def _needs_review(self, tenant: str, component: str, module: str, paths: list[str]) -> str | None:
        parts = PurePosixPath(module).parts
        own_tests = {p for p in paths if PurePosixPath(p).name == f"test_{PurePosixPath(module).stem}.py"}
        beyond = sorted(set(paths) - {module} - {p for p in own_tests if p.startswith("tests/")})
        if beyond:
            return f"the change also writes {beyond}, beyond the component and its tests"
        if tenant == SYSTEM_TENANT:
            return "tenant system: a system-wide change"
        if parts[0] != "components":
            return f"{module} is part of the server itself, outside components/"
        if len(parts) > 2 and parts[1] in self.config.shared_packages:
            return f"{module} is a shared component"
        if self.config.review_required:
            return "the setting improvement_review_required holds every change for review"
        if component in self.config.review_components:
            return f"the setting improvement_review_components lists {component}"
        return None

    async def _deploy(
        self, record: CandidateRecord, inputs: CandidateInputs, module: str, shown_sha: str, result: GenerationResult
    ) -> bool:
        assert result.change is not None
        opportunity = inputs.opportunity
        files = {path: content.encode("utf-8") for path, content in result.change.files.items()}
        tests = sorted(p for p in {*files, *self._tests_of(module)} if PurePosixPath(p).name.startswith("test_"))
        detail = {
            "cycle_id": record.cycle_id,
            "position": record.position,
            "metric": opportunity.metric,
            "direction": opportunity.direction,
            "goal": opportunity.goal,
            "test_paths": tests,
            "validation": result.report.to_dict() if result.report else None,
        }
        component_type = await anyio.to_thread.run_sync(self.component_type_of, inputs.tenant, module)
        if component_type is not None:  # e.g. a tool's new version: the registry serves it from this deployment
            detail |= {"component_type": component_type, "module": module}
        reason = f"improvement cycle {record.cycle_id}: {opportunity.goal}"
        review = self._needs_review(inputs.tenant, opportunity.component, module, sorted(files))
        expected = {module: shown_sha}
        # The id is recorded before the change: after a crash mid-deploy, start-up recovery finishes or undoes it,
        # and the cycle finds it (and a held change, once decided).
        record.deployment_id = uuid.uuid4().hex
        try:
            if review is not None:
                await self.save(record, "deploying", test_paths=tests)
                call = functools.partial(
                    self.deployer.propose, inputs.tenant, opportunity.component, files, actor=ACTOR, reason=reason,
                    hold_for_approval=True, detail={**detail, "review": review}, deployment_id=record.deployment_id,
                    expected=expected,
                )  # fmt: skip
                await anyio.to_thread.run_sync(call)
                await archive(self, record, inputs, module, result, "held", f"held for approval: {review}")
                await inputs.progress("approval", f"{opportunity.component}: waiting for approval ({review})")
                await self.save(record, "pending_approval", message=f"held for approval: {review}", test_paths=tests)
                return False
            await self.save(record, "deploying", test_paths=tests)
            await inputs.progress("deploy", f"{opportunity.component}: deploying {len(files)} files")
            call = functools.partial(
                self.deployer.deploy, inputs.tenant, opportunity.component, files, actor=ACTOR, reason=reason,
                detail=detail, deployment_id=record.deployment_id, expected=expected,
            )  # fmt: skip
            deployed: Deployment = await anyio.to_thread.run_sync(call)
        except DeployError as exc:
            await self.save(record, "deploy_failed", message=str(exc))
            return False
        await archive(self, record, inputs, module, result, "deployed", "deployed; the verdict is pending")
        await self.start_monitoring(record, deployed.id, deployed.updated_at)
        return True

    async def start_monitoring(self, record: CandidateRecord, deployment_id: str, deployed_at: float) -> None:
        record.deployment_id = deployment_id
        record.monitor_until = deployed_at + self.config.monitoring_seconds
        await self.save(
            record,
            "monitoring",
            deployed_at=deployed_at,
            message=f"deployed; monitoring for {self.config.monitoring_seconds:g} s",
        )

    def _tests_of(self, module: str) -> list[str]:
        stem = PurePosixPath(module).stem
        tests = self.deployer.workspace / "tests"
        found = tests.rglob(f"test_{stem}.py") if tests.is_dir() else []
        return [p.relative_to(self.deployer.workspace).as_posix() for p in found]

    async def monitor(self, record: CandidateRecord, tenant: str, direction: str, progress: Progress) -> None:
        """Wait out the monitoring period, judge the change, keep it or roll it back."""
        await judge(self, record, tenant, direction, progress)

    def audit_generation(
        self, inputs: CandidateInputs, module: str, result: GenerationResult | None, error: str | None = None
    ) -> None:
        """One "generation_result" entry per candidate: what the model's rounds gave, or (``result`` None) why there
        was no result: the model could not be asked (``error``), or the candidate was skipped. The rounds and tokens
        of a generation the model failed midway are not known here (the error carries none)."""
        detail: dict[str, Any] = {
            "cycle_id": inputs.cycle_id,
            "component": inputs.opportunity.component,
            "module": module,
            "succeeded": bool(result and result.succeeded),
            "error": error[:MAX_ERROR_CHARS] if error else None,
            "rounds": len(result.rounds) if result else None,
            "outcomes": [r.outcome for r in result.rounds] if result else [],
            "prompt_tokens": result.prompt_tokens if result else None,
            "completion_tokens": result.completion_tokens if result else None,
            "validation_passed": result.report.passed if result and result.report else None,
        }
        self.audit.append("generation_result", module, actor=inputs.requested_by, tenant=inputs.tenant, detail=detail)

    async def skip(
        self, record: CandidateRecord, inputs: CandidateInputs, message: str, module: str | None = None
    ) -> None:
        """The candidate is not generated (``message`` says why): recorded, and audited like any generation."""
        subject = module or str(record.detail.get("module") or record.component)
        await anyio.to_thread.run_sync(self.audit_generation, inputs, subject, None, f"skipped: {message}")
        await self.save(record, "skipped", message=message)


def _generation_detail(result: GenerationResult) -> CandidateDetail:
    text = result.report.render() if result.report else ""
    return {
        "diff": result.diff[:MAX_DIFF_CHARS],
        "diff_truncated": len(result.diff) > MAX_DIFF_CHARS,
        "validation_passed": result.report.passed if result.report else None,
        "validation_text": text[:MAX_REPORT_CHARS],
        "rounds": [
            {
                "number": r.number,
                "outcome": r.outcome,
                "problems": [p[:1000] for p in r.problems],
                "prompt_tokens": r.prompt_tokens,
                "completion_tokens": r.completion_tokens,
                "seconds": round(r.latency_ms / 1000, 2),
                "reply_excerpt": r.reply_excerpt,
                "repairs": list(r.repairs),
            }
            for r in result.rounds
        ],
        "prompt_tokens": result.prompt_tokens,
        "completion_tokens": result.completion_tokens,
    }
