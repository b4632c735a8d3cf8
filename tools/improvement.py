"""``trigger_improvement_cycle`` and ``get_improvement_cycle``: the learning engine's opportunities, improved by the
LLM, validated, held for approval or deployed, monitored, and kept or rolled back.

A cycle runs in the server's background (it outlives the request, and its state is persisted): the tool waits for it
up to ``improvement_wait_seconds`` while sending progress notifications, then answers with the cycle as it stands;
``get_improvement_cycle`` follows it later. Role ``improve`` on the tenant (``dry_run`` too: it asks the LLM).
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Annotated, Any, Literal, Protocol

import anyio.to_thread
from mcp import MCPError
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ResourceNotFoundError
from mcp.types import ToolAnnotations
from pydantic import BaseModel, Field

from generators.deploy import DeployError
from generators.improvement import CandidateStatus, CycleRequest, CycleStatus
from generators.improvement.models import LeftOutEntry, LeftOutReason, outcome_counts
from generators.improvement.picking import MAX_LEFT_OUT
from generators.llm import LLMNotConfigured
from tools.access import Caller, authorize, authorize_resource
from tools.errors import ToolFailure, domain_errors
from tools.generation import Switches, check_enabled
from tools.services import Services, ServicesOf

if TYPE_CHECKING:  # what the services are, for the type checker
    from generators.changes import ChangeService
    from generators.deploy import VersionStore
    from generators.improvement.cycle import ImprovementService
    from generators.llm import LLMClient


if TYPE_CHECKING:
    from generators.improvement import CandidateRecord, CycleRecord

logger = logging.getLogger(__name__)
ELICIT_DIFF_CHARS = 4_000
ACTIVE_URI = "improvements://active"
MAX_ACTIVE = 20
MAX_ACTIVE_SCAN = 500  # cycles read before the caller's tenants are picked out
CYCLE_ID = Annotated[str, Field(min_length=1, max_length=64, description="Cycle id from trigger_improvement_cycle.")]


class Needs(Switches, Protocol):
    """What the improvement tools use of the server's services (:class:`tools.services.Services` has them all)."""

    @property
    def changes(self) -> ChangeService: ...

    @property
    def improvement_wait_seconds(self) -> float: ...

    @property
    def improvements(self) -> ImprovementService: ...

    @property
    def llm(self) -> LLMClient: ...

    @property
    def versions(self) -> VersionStore: ...


class CandidateView(BaseModel):
    component: str = Field(description="Component.")
    metric: str = Field(description="Metric to improve.")
    goal: str = Field(description="Goal.")
    impact_score: float = Field(description="Impact score (0-10,000).")
    risk: str = Field(description="Blast radius of changing it: low, medium or high.")
    risk_factors: dict[str, Any] = Field(description="Figures behind the risk.")
    status: CandidateStatus = Field(description="Where it stands; regressed: worse, with rollback off.")
    message: str = Field(description="What happened.")
    deployment_id: str | None = Field(description="Its deployment, if any.")
    monitor_until: float | None = Field(description="Unix time monitoring ends.")
    diff: str = Field(description="Diff of the validated change (bounded).")
    diff_truncated: bool = Field(description="True: cut.")
    validation_passed: bool | None = Field(description="Last validation verdict; null: none.")
    validation_text: str = Field(description="Last validation report (bounded).")
    figures: dict[str, Any] = Field(description="Before/after figures, once judged.")
    reasons: list[str] = Field(description="Why it was judged worse.")
    prompt_tokens: int = Field(description="Prompt tokens.")
    completion_tokens: int = Field(description="Completion tokens.")
    rounds: list[dict[str, Any]] = Field(description="Rounds: outcome, problems, tokens, seconds.")


class LeftOutView(BaseModel):
    component: str = Field(description="Component.")
    metric: str = Field(description="Metric.")
    reason: LeftOutReason = Field(description="Why.")
    message: str = Field(description="Why, in words.")
    risk: str | None = Field(description="Blast radius; null: no module.")
    risk_factors: dict[str, Any] = Field(description="Figures behind the risk.")


class CycleView(BaseModel):
    cycle_id: str = Field(description="Cycle id.")
    tenant_id: str = Field(description="Tenant.")
    trigger: Literal["manual", "autonomous", "emergency"] = Field(description="Who started it.")
    status: CycleStatus = Field(
        description="completed: a change kept, validated or held; no_improvement: none kept; failed: all errored; "
        "nothing_to_do: see left_out; interrupted: the server stopped (its changes judged after restart)."
    )
    dry_run: bool = Field(description="True: nothing deployed.")
    started_at: float = Field(description="Unix time it started.")
    finished_at: float | None = Field(description="Unix time it ended; null: running.")
    error: str | None = Field(description="Why it failed or stopped.")
    candidates: list[CandidateView] = Field(description="By impact.")
    outcomes: dict[str, int] = Field(description="Candidates per status.")
    left_out: list[LeftOutView] = Field(description=f"Opportunities not acted on (first {MAX_LEFT_OUT}).")
    left_out_total: int = Field(description="All left out.")
    message: str = Field(description="Summary of outcomes.")


class ActiveImprovements(BaseModel):
    cycles: list[CycleView] = Field(description="Cycles still at work (running, or with changes held or watched).")
    has_more: bool = Field(description=f"True when more than {MAX_ACTIVE} cycles are at work.")


MAX_ATTEMPTS = 20


def register(server: MCPServer, deps: ServicesOf[Needs]) -> None:
    """Add the improvement-cycle tools and the ``improvements://active`` resource to ``server``."""

    @server.resource(
        ACTIVE_URI,
        name="active_improvements",
        title="Active improvement cycles",
        description=f"Improvement cycles still at work, newest first (at most {MAX_ACTIVE}), as JSON: running ones "
        "and those whose changes wait for approval or are deployed and watched. Updated when any of them changes.",
        mime_type="application/json",
    )
    async def active_improvements_resource() -> str:
        caller = authorize_resource("read")
        found, more = await anyio.to_thread.run_sync(deps(None).improvements.store.active, MAX_ACTIVE_SCAN)
        visible = [view(c) for c in found if caller.may_use(c.tenant)]
        answer = ActiveImprovements(cycles=visible[:MAX_ACTIVE], has_more=more or len(visible) > MAX_ACTIVE)
        return answer.model_dump_json(indent=2)

    @server.resource(
        "improvements://attempts/{tenant_id}/{component}",
        name="improvement_attempts",
        title="Improvement attempts of a component",
        description=f"Every archived attempt at improving one component of a tenant, newest first (at most "
        f"{MAX_ATTEMPTS}), as JSON: outcome, reason, measured effect and diff (bounded). The next attempt on the "
        "component is shown the best kept ones and why the others failed.",
        mime_type="application/json",
    )
    async def attempts_resource(tenant_id: str, component: str) -> str:
        caller = authorize_resource("read")
        archive = deps(None).improvements.runner.attempts
        if not caller.may_use(tenant_id) or archive is None:
            raise ResourceNotFoundError(f"no attempts of {component!r} for tenant {tenant_id!r} that you may read")
        found = await anyio.to_thread.run_sync(archive.recent, tenant_id, component, MAX_ATTEMPTS)
        return json.dumps({"tenant_id": tenant_id, "component": component,
                           "attempts": [a.to_dict() for a in found]}, indent=2)  # fmt: skip

    @server.tool(
        title="Run an improvement cycle",
        annotations=ToolAnnotations(
            read_only_hint=False, destructive_hint=True, idempotent_hint=False, open_world_hint=True
        ),
    )
    async def trigger_improvement_cycle(
        ctx: Context[Services, Any],
        analysis_window_hours: Annotated[
            float, Field(gt=0, le=24 * 30, description="Telemetry window the opportunities come from (hours).")
        ] = 24.0,
        max_improvements: Annotated[int, Field(ge=1, le=10, description="Most opportunities to act on.")] = 3,
        tenant_id: Annotated[str, Field(min_length=1, max_length=64, description="Tenant to improve.")] = "default",
        dry_run: Annotated[bool, Field(description="Generate and validate only; deploy nothing.")] = False,
        risk_tolerance: Annotated[
            Literal["low", "medium", "high"],
            Field(description="Highest blast radius to act on (shared, imported, untested, rolled back)."),
        ] = "medium",
    ) -> CycleView:
        """Improve the components behind a tenant's top opportunities: LLM edits, validated, held for approval when
        system-wide or marked for review, else deployed; after monitoring, benchmark, metric, errors and tests
        decide to keep or restore each. Answers when it ends or at the wait limit (then get_improvement_cycle).
        """
        caller = authorize("improve", tenant_id)
        svc = deps(ctx)
        check_enabled(svc)
        if not svc.llm.configured:
            raise ToolFailure(str(LLMNotConfigured()), LLMNotConfigured.kind)
        request = CycleRequest(
            tenant_id, caller.name, analysis_window_hours, max_improvements, dry_run, risk_tolerance, "manual"
        )
        steps = 0

        async def progress(stage: str, message: str) -> None:
            nonlocal steps
            steps += 1
            await ctx.report_progress(steps, None, f"{stage}: {message}")

        found = await svc.improvements.run(request, progress, svc.improvement_wait_seconds)
        if await ask_approvals(ctx, svc, caller, found):
            found = await svc.improvements.get(found.id) or found
        return view(found)

    @server.tool(
        title="Improvement cycle status", annotations=ToolAnnotations(read_only_hint=True, open_world_hint=False)
    )
    async def get_improvement_cycle(ctx: Context[Services, Any], cycle_id: CYCLE_ID) -> CycleView:
        """One improvement cycle as it stands, with every candidate."""
        caller = authorize("read")
        svc = deps(ctx)
        with domain_errors():
            found = await svc.improvements.visible(cycle_id, caller.may_use)
        authorize("read", found.tenant)
        return view(found)


class ApprovalAnswer(BaseModel):
    approve: bool = Field(description="Deploy this change now (it is then monitored and kept or rolled back)?")
    reason: str = Field("decided in the client", max_length=500, description="Why; kept in the audit log.")


async def ask_approvals(ctx: Context[Services, Any], svc: Needs, caller: Caller, cycle: CycleRecord) -> bool:
    """Ask the user of a client that supports elicitation to decide the cycle's held changes, when the caller may
    approve; True when something was decided. Clients without a back channel are left to approve_change."""
    held = [c for c in cycle.candidates if c.status == "pending_approval" and c.deployment_id]
    capabilities = ctx.client_capabilities
    if not held or capabilities is None or capabilities.elicitation is None or not caller.has_role("approve"):
        return False
    decided = False
    for candidate in held:
        assert candidate.deployment_id is not None
        diff = str(candidate.detail.get("diff", ""))[:ELICIT_DIFF_CHARS]
        message = (
            f"Improvement of {candidate.component} is held for approval "
            f"({candidate.detail.get('message', 'review required')}). Deploy it?\n\n{diff}"
        )
        try:
            answer = await ctx.elicit(message, ApprovalAnswer)
        except MCPError:  # no back channel on this session (2026 era, stateless HTTP)
            return decided
        if answer.action != "accept":
            continue
        found = await anyio.to_thread.run_sync(svc.versions.get, candidate.deployment_id)
        if found is None or found.status != "pending_approval":
            continue
        try:
            await svc.changes.decide(caller, found, answer.data.approve, answer.data.reason)
        except DeployError as exc:  # e.g. the files changed meanwhile: the candidate says so, the cycle is returned
            logger.warning("decision on %s from the client failed: %s", found.id, exc)
            continue
        decided = True
    return decided


def view(cycle: CycleRecord) -> CycleView:
    """The tool view of a cycle record."""
    candidates = [_candidate(c) for c in cycle.candidates]
    counts = outcome_counts(cycle.candidates)
    outcome = ", ".join(f"{n} {s}" for s, n in counts.items()) or "no opportunities to act on"
    if cycle.left_out_total:
        reasons: dict[str, int] = {}
        for entry in cycle.left_out:
            reasons[str(entry.get("reason"))] = reasons.get(str(entry.get("reason")), 0) + 1
        shown = ", ".join(f"{n} {r}" for r, n in sorted(reasons.items()))
        outcome += f"; {cycle.left_out_total} left out ({shown})"
    return CycleView(
        cycle_id=cycle.id,
        tenant_id=cycle.tenant,
        trigger=cycle.trigger,
        status=cycle.status,
        dry_run=bool(cycle.params.get("dry_run", False)),
        started_at=cycle.started_at,
        finished_at=cycle.finished_at,
        error=cycle.error,
        candidates=candidates,
        outcomes=counts,
        left_out=[_left_out(entry) for entry in cycle.left_out[:MAX_LEFT_OUT]],
        left_out_total=cycle.left_out_total,
        message=f"cycle {cycle.status}: {outcome}",
    )


def _left_out(entry: LeftOutEntry) -> LeftOutView:
    """An entry as stored; one written by an older version may lack keys."""
    return LeftOutView(
        component=str(entry.get("component", "")),
        metric=str(entry.get("metric", "")),
        reason=entry.get("reason", "no_module"),
        message=str(entry.get("message", "")),
        risk=entry.get("risk"),
        risk_factors=dict(entry.get("risk_factors") or {}),
    )


def _candidate(c: CandidateRecord) -> CandidateView:
    d = c.detail
    return CandidateView(
        component=c.component,
        metric=c.metric,
        goal=str(d.get("goal", "")),
        impact_score=float(d.get("impact_score", 0.0)),
        risk=str(d.get("risk", "")),
        risk_factors=dict(d.get("risk_factors") or {}),
        status=c.status,
        message=str(d.get("message", "")),
        deployment_id=c.deployment_id,
        monitor_until=c.monitor_until,
        diff=str(d.get("diff", "")),
        diff_truncated=bool(d.get("diff_truncated", False)),
        validation_passed=d.get("validation_passed"),
        validation_text=str(d.get("validation_text", "")),
        figures=dict(d.get("figures", {})),
        reasons=list(d.get("reasons", [])),
        prompt_tokens=int(d.get("prompt_tokens", 0)),
        completion_tokens=int(d.get("completion_tokens", 0)),
        rounds=[r for r in d.get("rounds", []) if isinstance(r, dict)][:10],
    )
