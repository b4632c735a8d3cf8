"""A new component asked for by a caller: the generation use case, the same for every front end.

:class:`ComponentService` audits the request, generates the component with the LLM (its tokens charged to the
tenant), audits the result or the failure, and on request deploys the accepted change through the deployer — for the
tenant ``system`` it is proposed and held for approval instead. A refused deployment is part of the answer, not an
error: the generation itself succeeded.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import anyio.to_thread

from generators.deploy import SYSTEM_TENANT, AuditLog, Deployer, Deployment
from generators.errors import GeneratorError
from generators.llm import spend_scope

if TYPE_CHECKING:  # the generation loop is imported on first use, not at start-up
    from generators.codegen.generation import CodeGenerator
    from generators.codegen.rounds import GenerationResult, ProgressCallback

EXCERPT_CHARS = 500  # of the requirements and of an error, in the audit log


@dataclass(frozen=True, slots=True)
class ComponentRequest:
    """What a caller (``actor``) asks for, for ``tenant``; ``scoped`` is the tenant folder (None: the shared root)."""

    component_type: str
    requirements: str
    tenant: str
    scoped: str | None
    actor: str
    name: str | None = None
    context: str | None = None
    deploy: bool = False


@dataclass(frozen=True, slots=True)
class ComponentOutcome:
    result: GenerationResult
    deployment: Deployment | None  # deployed, or held for approval (tenant system)
    deploy_error: GeneratorError | None  # why the accepted change was not deployed (a front end words it)


class ComponentService:
    """One per server, owned by the lifespan."""

    def __init__(self, generator: Callable[[], CodeGenerator], deployer: Deployer, audit: AuditLog) -> None:
        self.generator = generator
        self.deployer = deployer
        self.audit = audit

    async def generate(
        self,
        request: ComponentRequest,
        progress: ProgressCallback | None = None,
        deploying: Callable[[], Awaitable[None]] | None = None,
    ) -> ComponentOutcome:
        """Generate (and on request deploy) the component; ``progress`` hears each round's steps, ``deploying`` that
        the accepted change is being written.

        Raises:
            GeneratorError: the model could not be asked, or the request cannot be served (audited as a failure).
        """
        await anyio.to_thread.run_sync(self._audit_request, request)
        try:
            with spend_scope(request.tenant, actor=request.actor):  # its LLM tokens count for the tenant
                result = await self.generator().generate_component(
                    request.component_type, request.requirements, name=request.name, context=request.context,
                    tenant_id=request.scoped, progress=progress,
                )  # fmt: skip
        except GeneratorError as exc:
            await anyio.to_thread.run_sync(self._audit_failure, request, str(exc))
            raise
        await anyio.to_thread.run_sync(self._audit_result, request, result)
        deployment, deploy_error = None, None
        if request.deploy and result.succeeded:
            if deploying is not None:
                await deploying()
            deployment, deploy_error = await anyio.to_thread.run_sync(self._deploy, request, result)
        return ComponentOutcome(result, deployment, deploy_error)

    def _audit_request(self, request: ComponentRequest) -> None:
        detail = {"component_type": request.component_type, "name": request.name,
                  "requirements": request.requirements[:EXCERPT_CHARS]}  # fmt: skip
        subject = request.name or request.component_type
        self.audit.append("generation_request", subject, actor=request.actor, tenant=request.tenant, detail=detail)

    def _audit_failure(self, request: ComponentRequest, error: str) -> None:
        detail = {"succeeded": False, "error": error[:EXCERPT_CHARS]}
        self.audit.append("generation_result", "error", actor=request.actor, tenant=request.tenant, detail=detail)

    def _audit_result(self, request: ComponentRequest, result: GenerationResult) -> None:
        detail = {
            "succeeded": result.succeeded,
            "rounds": len(result.rounds),
            "outcomes": [r.outcome for r in result.rounds],
            "round_tokens": [r.prompt_tokens + r.completion_tokens for r in result.rounds],
            "round_seconds": [round(r.latency_ms / 1000, 3) for r in result.rounds],
            "prompt_tokens": result.prompt_tokens,
            "completion_tokens": result.completion_tokens,
            "files": sorted(result.change.files) if result.change else [],
            "validation_passed": result.report.passed if result.report else None,
        }
        subject = result.target_path or "component"
        self.audit.append("generation_result", subject, actor=request.actor, tenant=request.tenant, detail=detail)

    def _deploy(
        self, request: ComponentRequest, result: GenerationResult
    ) -> tuple[Deployment | None, GeneratorError | None]:
        """Deploy (or, for tenant ``system``, propose) the accepted change; a refusal (a full disk too) is returned."""
        assert result.change is not None  # only called for a succeeded result
        files = {path: text.encode("utf-8") for path, text in result.change.files.items()}
        component = (result.target_path or "component").rsplit("/", 1)[-1].removesuffix(".py")
        reason = f"generated: {request.requirements[:200]}"
        detail = {
            "validation": result.report.to_dict() if result.report else None,
            "rounds": len(result.rounds),
            "component_type": request.component_type,  # a "tool" is served once deployed (generators.toolhost)
            "module": result.target_path,
        }
        try:
            if request.tenant == SYSTEM_TENANT:
                held = self.deployer.propose(
                    request.tenant, component, files, actor=request.actor, reason=reason, hold_for_approval=True,
                    detail=detail,
                )  # fmt: skip
                return held, None
            done = self.deployer.deploy(
                request.tenant, component, files, actor=request.actor, reason=reason, detail=detail
            )
            return done, None
        except GeneratorError as exc:
            return None, exc
