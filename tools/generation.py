"""``generate_component``: ask the LLM for a new component, validate it, and optionally deploy it.

Role ``improve`` on the tenant. The tenant ``default`` (or the server's default tenant) is not tenant-scoped: its
component goes to ``components/<name>.py`` and its tests to ``tests/test_<name>.py``; any other tenant's to
``components/<tenant>/<name>.py`` and ``tests/<tenant>/test_<name>.py``. Only a change whose tests are there, pass
and run its lines is accepted. A generation whose every round failed (a reply that could not be applied, wrote
files not asked for, changed nothing, or failed validation) is a normal answer (``succeeded`` false, each round's
outcome and problems, the report), so the agent can read why, and is never deployed; a refused request (flags off,
no LLM, LLM down, bad name) is a ``ToolError``. With ``deploy`` the accepted files are written as one transaction,
except for tenant ``system``: system-wide changes wait in ``pending_approval`` for a caller with the ``approve``
role. Every request and result is in the audit log, with each round's outcome, tokens and seconds. The use case is
:class:`generators.changes.ComponentService`'s; this module checks roles and switches and shapes the answer.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any, Protocol

from mcp.server.mcpserver import Context, MCPServer
from mcp.types import ToolAnnotations
from pydantic import BaseModel, Field

from generators.changes import ComponentRequest
from generators.codegen.models import RoundOutcome
from generators.codegen.tool_rules import TOOL_TYPE
from generators.deploy import Deployment, DeploymentStatus
from generators.llm import LLMNotConfigured
from tools.access import authorize
from tools.errors import ToolFailure, domain_errors, domain_message
from tools.generated_tools import tool_name
from tools.services import Services, ServicesOf

if TYPE_CHECKING:  # what the services are, for the type checker
    from generators.changes import ComponentService
    from generators.llm import LLMClient
    from generators.toolhost import GeneratedTools


if TYPE_CHECKING:  # the generation loop is imported on first use, not at start-up
    from generators.codegen.rounds import GenerationResult, RoundRecord
    from generators.validation import ValidationReport

MAX_DIFF_CHARS = 20_000
MAX_PROBLEM_CHARS = 2_000  # each problem of a round
MAX_REPORT_CHARS = 8_000  # the validation text, and the validation dict's JSON size
MAX_FINDINGS = 20  # per stage in the validation dict
MAX_OUTPUT_TAIL = 2_000  # test output kept per stage in the validation dict
DEFAULT_TENANT = "default"


class Switches(Protocol):
    """The operator's switches of self-building."""

    @property
    def component_generation_enabled(self) -> bool: ...

    @property
    def self_building_enabled(self) -> bool: ...


class Needs(Switches, Protocol):
    """What the generation tools use of the server's services (:class:`tools.services.Services` has them all)."""

    @property
    def components(self) -> ComponentService: ...

    @property
    def default_tenant(self) -> str: ...

    @property
    def generated_tools(self) -> GeneratedTools | None: ...

    @property
    def llm(self) -> LLMClient: ...


class RoundSummary(BaseModel):
    number: int = Field(description="Round, from 1.")
    outcome: RoundOutcome = Field(description="refused: wrote files not asked; no_change: code unchanged.")
    problems: list[str] = Field(description="What the model was told.")
    problems_truncated: bool = Field(description="True: a problem was cut.")
    files: list[str] = Field(description="Files after this round.")
    prompt_tokens: int = Field(description="Prompt tokens.")
    completion_tokens: int = Field(description="Completion tokens.")
    seconds: float = Field(description="Time the model took.")
    reply_excerpt: str = Field(description="Reply start (failed rounds).")
    repairs: list[str] = Field(description="Imports the server added.")


class DeploymentRef(BaseModel):
    deployment_id: str = Field(description="Deployment id.")
    status: DeploymentStatus = Field(description="pending_approval: system-wide change.")


class GenerationOutput(BaseModel):
    succeeded: bool = Field(description="True: a change passed validation.")
    tenant_id: str = Field(description="Its tenant.")
    target_path: str | None = Field(description="Workspace path of the module.")
    files: list[str] = Field(description="Files of the accepted change.")
    diff: str = Field(description="Its unified diff.")
    diff_truncated: bool = Field(description=f"True: cut to {MAX_DIFF_CHARS} characters.")
    rounds: list[RoundSummary] = Field(description="Each ask, apply, validate round.")
    validation: dict[str, Any] | None = Field(description="Last validation report (cut); null: none.")
    validation_text: str = Field(description="The report as text (bounded).")
    validation_truncated: bool = Field(description="True: the report was cut.")
    prompt_tokens: int = Field(description="Prompt tokens over all rounds.")
    completion_tokens: int = Field(description="Completion tokens over all rounds.")
    deployment: DeploymentRef | None = Field(description="With deploy=true, on success.")
    deploy_error: str | None = Field(description="Why the deploy failed (nothing written).")
    message: str = Field(description="What happened.")


def register(server: MCPServer, deps: ServicesOf[Needs]) -> None:
    """Add ``generate_component`` to ``server``."""

    @server.tool(
        title="Generate a component",
        annotations=ToolAnnotations(
            read_only_hint=False, destructive_hint=True, idempotent_hint=False, open_world_hint=True
        ),
    )
    async def generate_component(
        ctx: Context[Services, Any],
        component_type: Annotated[
            str,
            Field(
                min_length=1,
                max_length=64,
                description="utility, service, tool, http_client, ...; network kinds may use the net.",
            ),
        ],
        requirements: Annotated[
            str, Field(min_length=1, max_length=20_000, description="What the component must do, in plain words.")
        ],
        context: Annotated[
            str | None, Field(max_length=20_000, description="Extra context for the model (APIs, constraints).")
        ] = None,
        name: Annotated[
            str | None,
            Field(max_length=64, description="Module name (lower_snake_case); null: derived."),
        ] = None,
        tenant_id: Annotated[
            str, Field(min_length=1, max_length=64, description="Tenant; 'default' = shared components/ root.")
        ] = DEFAULT_TENANT,
        deploy: Annotated[
            bool,
            Field(description="Write the accepted change (tenant 'system': propose it)."),
        ] = False,
    ) -> GenerationOutput:
        """Generate a new Python component and its tests (tests/[<tenant>/]test_<name>.py: they must pass and run
        its lines) by the LLM, validated in up to 3 rounds. deploy=true writes it (system-wide: once approved).
        component_type "tool": served as an MCP tool to its tenant.
        """
        caller = authorize("improve", tenant_id)
        svc = deps(ctx)
        check_enabled(svc)
        if not svc.llm.configured:
            raise ToolFailure(str(LLMNotConfigured()), LLMNotConfigured.kind)
        scoped = None if tenant_id in (DEFAULT_TENANT, svc.default_tenant) else tenant_id  # the default: the root
        request = ComponentRequest(
            component_type, requirements, tenant_id, scoped, caller.name, name=name, context=context, deploy=deploy
        )
        steps = 0

        async def progress(stage: str, number: int, message: str) -> None:
            nonlocal steps
            steps += 1
            await ctx.report_progress(steps, None, f"round {number} {stage}: {message}")

        async def deploying() -> None:
            await ctx.report_progress(steps + 1, None, "deploying")

        with domain_errors():
            done = await svc.components.generate(request, progress, deploying)
        deploy_error = domain_message(done.deploy_error) if done.deploy_error is not None else None
        out = _output(tenant_id, done.result, done.deployment, deploy_error, deploy)
        if component_type == TOOL_TYPE and done.deployment is not None and done.deployment.status == "deployed":
            out.message += await _served(svc.generated_tools, done.deployment)
        return out


async def _served(tools: GeneratedTools | None, deployment: Deployment) -> str:
    """How the tool a deployment brought is served, once it is (the answer never comes before the tool does)."""
    if tools is None:
        return ""
    await tools.sync()
    for record in tools.records():
        if (record.tenant, record.name) == (deployment.tenant, deployment.component):
            if record.status == "active":
                return f"; served as tool {tool_name(record.tenant, record.name)} (version {record.version})"
            return f"; the tool is not served: {record.error or record.status}"
    return ""


def check_enabled(svc: Switches) -> None:
    if not svc.self_building_enabled:
        raise ToolFailure(
            "self-building is switched off on this server (setting enable_self_building / "
            "SELF_BUILDING_ENABLE_SELF_BUILDING=false); an operator must turn it on",
            "refused",
        )
    if not svc.component_generation_enabled:
        raise ToolFailure(
            "component generation is switched off on this server (setting enable_component_generation / "
            "SELF_BUILDING_ENABLE_COMPONENT_GENERATION=false); an operator must turn it on",
            "refused",
        )


def _output(
    tenant: str, result: GenerationResult, deployment: Deployment | None, deploy_error: str | None, deploy: bool
) -> GenerationOutput:
    validation, cut = _bounded_report(result.report)
    text = result.report.render() if result.report else ""
    if deployment is not None:
        action = f"; deployment {deployment.id} is {deployment.status}"
    elif deploy_error is not None:
        action = f"; not deployed: {deploy_error}"
    elif result.succeeded:
        action = "; nothing was written (deploy=false)"
    else:
        action = "; nothing was written"
    outcomes = ", ".join(r.outcome for r in result.rounds)
    verdict = (
        "accepted" if result.succeeded else f"failed: no round gave a valid change with passing tests ({outcomes})"
    )
    return GenerationOutput(
        succeeded=result.succeeded,
        tenant_id=tenant,
        target_path=result.target_path,
        files=sorted(result.change.files) if result.change else [],
        diff=result.diff[:MAX_DIFF_CHARS],
        diff_truncated=len(result.diff) > MAX_DIFF_CHARS,
        rounds=[_round(r) for r in result.rounds],
        validation=validation,
        validation_text=text[:MAX_REPORT_CHARS],
        validation_truncated=cut or len(text) > MAX_REPORT_CHARS,
        prompt_tokens=result.prompt_tokens,
        completion_tokens=result.completion_tokens,
        deployment=DeploymentRef(deployment_id=deployment.id, status=deployment.status) if deployment else None,
        deploy_error=deploy_error,
        message=f"generation {verdict} after {len(result.rounds)} round(s){action}",
    )


def _round(record: RoundRecord) -> RoundSummary:
    problems = [p[:MAX_PROBLEM_CHARS] for p in record.problems]
    return RoundSummary(
        number=record.number,
        outcome=record.outcome,
        problems=problems,
        problems_truncated=any(len(p) > MAX_PROBLEM_CHARS for p in record.problems),
        files=list(record.files),
        prompt_tokens=record.prompt_tokens,
        completion_tokens=record.completion_tokens,
        seconds=round(record.latency_ms / 1000, 3),
        reply_excerpt=record.reply_excerpt,
        repairs=list(record.repairs),
    )


def _bounded_report(report: ValidationReport | None) -> tuple[dict[str, Any] | None, bool]:
    """The report as a dict with at most :data:`MAX_FINDINGS` findings and a short output tail per stage."""
    if report is None:
        return None, False
    data = report.to_dict()
    cut = False
    for stage in data["stages"]:
        if len(stage["findings"]) > MAX_FINDINGS:
            stage["findings"], cut = stage["findings"][:MAX_FINDINGS], True
        tail = stage["details"].get("output_tail")
        if isinstance(tail, str) and len(tail) > MAX_OUTPUT_TAIL:
            stage["details"]["output_tail"], cut = tail[-MAX_OUTPUT_TAIL:], True
    if len(json.dumps(data)) > MAX_REPORT_CHARS:
        # Still too big (long messages): keep the verdict and per-stage status only; the text form has the rest.
        data = {
            "passed": data["passed"],
            "duration_ms": data["duration_ms"],
            "stages": [{"name": s["name"], "status": s["status"], "note": s["note"]} for s in data["stages"]],
        }
        cut = True
    return data, cut
