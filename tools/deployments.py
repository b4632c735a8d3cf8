"""Deployment tools: list and inspect deployments (with diffs), roll one back, and decide pending approvals.

Roles: reading needs ``read`` on the deployment's tenant. ``rollback_deployment`` needs ``improve``: the role that
may deploy generated code must be able to undo it quickly, and a rollback only ever restores bytes that were there
before (hash-checked, refused when the files changed since). ``approve_change`` and ``list_pending_approvals`` need
``approve``. The use cases (visibility per tenant, rollback, approval and rejection, their audit entries) are the
change service's (:class:`generators.changes.ChangeService`), which the dashboard uses too; this module checks roles
and shapes the answers.
"""

from __future__ import annotations

import difflib
from typing import TYPE_CHECKING, Annotated, Any, Protocol

import anyio
import anyio.to_thread
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError, ToolError
from mcp.types import ToolAnnotations
from pydantic import BaseModel, Field

from generators.changes import restored
from generators.deploy import (
    Deployer,
    Deployment,
    DeploymentStatus,
    FileVersion,
)
from generators.deploy.transaction import file_sha256
from tools.access import Caller, Role, authorize, authorize_resource
from tools.errors import domain_errors
from tools.outcome import kind_of
from tools.services import Services, ServicesOf

if TYPE_CHECKING:  # what the services are, for the type checker
    from generators.changes import ChangeService
    from generators.deploy import VersionStore


MAX_DIFF_CHARS = 20_000  # all files of one get_deployment answer together
MAX_PENDING = 100
ID = Annotated[str, Field(min_length=1, max_length=64, description="Deployment id.")]


class Needs(Protocol):
    """What the deployments tools use of the server's services (:class:`tools.services.Services` has them all)."""

    @property
    def changes(self) -> ChangeService: ...

    @property
    def deployer(self) -> Deployer: ...

    @property
    def versions(self) -> VersionStore: ...


class DeploymentSummary(BaseModel):
    deployment_id: str = Field(description="Deployment id.")
    tenant_id: str = Field(description="Tenant.")
    component: str = Field(description="Component.")
    status: DeploymentStatus = Field(description="Where it stands.")
    actor: str = Field(description="Key (or 'local') that made it.")
    reason: str = Field(description="Why it was made.")
    created_at: float = Field(description="Unix time recorded.")
    updated_at: float = Field(description="Unix time of the last change.")
    paths: list[str] = Field(description="Workspace paths it writes.")
    commit_sha: str | None = Field(description="Git commit; null outside git or undeployed.")
    rollback_reason: str | None = Field(description="Why it was rolled back.")
    error: str | None = Field(description="Last failure or rejection.")


class FileChange(BaseModel):
    path: str = Field(description="Workspace path.")
    change: str = Field(description="'created' or 'modified'.")
    previous_sha256: str | None = Field(description="sha256 before; null if created.")
    new_sha256: str = Field(description="sha256 it writes.")
    current_sha256: str | None = Field(description="sha256 in the workspace now; null if absent.")
    binary: bool = Field(description="True: not UTF-8 text (no diff).")
    diff: str | None = Field(description="Unified diff; null if binary or over budget.")
    truncated: bool = Field(description="True: the diff was cut or left out.")


class DeploymentDetail(DeploymentSummary):
    rollback_commit_sha: str | None = Field(description="Git commit of the rollback.")
    detail: dict[str, Any] = Field(description="Validation report, figures, cycle data.")
    files: list[FileChange] = Field(description="Its files, by path.")
    diff_truncated: bool = Field(description=f"True when some diff was cut to the {MAX_DIFF_CHARS}-character budget.")


class DeploymentList(BaseModel):
    tenant_id: str = Field(description="Tenant listed.")
    status: DeploymentStatus | None = Field(description="Status filter; null: any.")
    deployments: list[DeploymentSummary] = Field(description="Deployments, newest first.")
    has_more: bool = Field(description="True: more than `limit`.")


class PendingApprovals(BaseModel):
    changes: list[DeploymentSummary] = Field(description="Newest first.")
    has_more: bool = Field(description=f"True when more than {MAX_PENDING} changes are waiting.")


class ActionResult(BaseModel):
    deployment: DeploymentSummary = Field(description="The deployment now.")
    message: str = Field(description="What was done.")


def summary(d: Deployment) -> DeploymentSummary:
    """The tool view of a deployment record."""
    return DeploymentSummary(
        deployment_id=d.id, tenant_id=d.tenant, component=d.component, status=d.status, actor=d.actor,
        reason=d.reason, created_at=d.created_at, updated_at=d.updated_at, paths=list(d.paths),
        commit_sha=d.commit_sha, rollback_reason=d.rollback_reason, error=d.error,
    )  # fmt: skip


def file_changes(deployer: Deployer, versions: list[FileVersion]) -> tuple[list[FileChange], bool]:
    """Each file's hashes and diff, the diffs sharing :data:`MAX_DIFF_CHARS`; and whether any was cut."""
    budget = MAX_DIFF_CHARS
    cut = False
    changes = []
    for v in versions:
        old, new = _text(v.previous or b""), _text(v.new)
        diff: str | None = None
        truncated = False
        if old is not None and new is not None:
            lines = difflib.unified_diff(
                old.splitlines(keepends=True), new.splitlines(keepends=True), f"a/{v.path}", f"b/{v.path}"
            )
            full = "".join(lines)
            diff, truncated = (full[:budget] if budget > 0 else None), len(full) > budget
            budget -= len(diff or "")
            cut = cut or truncated
        changes.append(
            FileChange(
                path=v.path, change="created" if v.previous is None else "modified",
                previous_sha256=v.previous_sha256, new_sha256=v.new_sha256,
                current_sha256=file_sha256(deployer.workspace / v.path), binary=old is None or new is None,
                diff=diff, truncated=truncated,
            )
        )  # fmt: skip
    return changes, cut


def _text(data: bytes) -> str | None:
    if b"\0" in data:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


async def visible_deployment(svc: Needs, deployment_id: str, role: Role) -> tuple[Deployment, Caller]:
    """The deployment, after checking ``role`` (the change service checks the caller's tenants: else not found)."""
    caller = authorize(role)
    with domain_errors():
        found = await svc.changes.visible(caller, deployment_id)
    authorize(role, found.tenant)
    return found, caller


async def deployment_detail(svc: Needs, deployment_id: str) -> DeploymentDetail:
    """One deployment with its files and diffs, for a caller with ``read`` on its tenant (else: not found)."""
    found, _ = await visible_deployment(svc, deployment_id, "read")
    versions = await anyio.to_thread.run_sync(svc.versions.files, deployment_id)
    files, cut = await anyio.to_thread.run_sync(file_changes, svc.deployer, versions)
    return DeploymentDetail(
        **summary(found).model_dump(), rollback_commit_sha=found.rollback_commit_sha, detail=found.detail,
        files=files, diff_truncated=cut,
    )  # fmt: skip


async def rollback(svc: Needs, deployment_id: str, reason: str) -> ActionResult:
    """Roll a deployment back for a caller with ``improve`` on its tenant.

    Raises:
        ToolError: not found, not allowed, or refused (with what to do).
    """
    found, caller = await visible_deployment(svc, deployment_id, "improve")
    with domain_errors():
        done = await svc.changes.rollback(caller, found, reason)
    return ActionResult(deployment=summary(done), message=restored(done))


def register(server: MCPServer, deps: ServicesOf[Needs]) -> None:
    """Add the deployment and approval tools, and the ``deployments://{deployment_id}`` resource, to ``server``."""
    read_only = ToolAnnotations(read_only_hint=True, open_world_hint=False)
    destructive = ToolAnnotations(read_only_hint=False, destructive_hint=True, open_world_hint=False)

    @server.tool(title="List deployments", annotations=read_only)
    async def list_deployments(
        ctx: Context[Services, Any],
        tenant_id: Annotated[str, Field(description="Tenant whose deployments to list.")] = "default",
        status: Annotated[DeploymentStatus | None, Field(description="Only deployments in this status.")] = None,
        limit: Annotated[int, Field(ge=1, le=200, description="Most deployments to return (1-200).")] = 20,
    ) -> DeploymentList:
        """Deployments of generated code into the workspace for a tenant, newest first, with status and files."""
        authorize("read", tenant_id)
        svc = deps(ctx)
        rows, more = await anyio.to_thread.run_sync(svc.versions.list, tenant_id, status, limit)
        return DeploymentList(tenant_id=tenant_id, status=status, deployments=[summary(d) for d in rows], has_more=more)

    @server.tool(title="Deployment details", annotations=read_only)
    async def get_deployment(ctx: Context[Services, Any], deployment_id: ID) -> DeploymentDetail:
        """One deployment in full: each file's hashes and bounded diff, the reason, git commits and the recorded
        detail.
        """
        return await deployment_detail(deps(ctx), deployment_id)

    @server.resource(
        "deployments://{deployment_id}",
        name="deployment",
        title="Deployment",
        description="One deployment as get_deployment shows it, as JSON. Updated when its status or figures change.",
        mime_type="application/json",
    )
    async def deployment_resource(deployment_id: str) -> str:
        authorize_resource("read")
        try:
            detail = await deployment_detail(deps(None), deployment_id)
        except ToolError as exc:
            if kind_of(exc) == "not_found":
                raise ResourceNotFoundError(str(exc)) from exc
            raise ResourceError(str(exc)) from exc  # not allowed: the reader's role (its tenant answers not found)
        return detail.model_dump_json(indent=2)

    @server.tool(title="Roll back a deployment", annotations=destructive)
    async def rollback_deployment(
        ctx: Context[Services, Any],
        deployment_id: ID,
        reason: Annotated[str, Field(min_length=1, max_length=2000, description="Why; kept in the audit log.")],
    ) -> ActionResult:
        """Restore the exact previous bytes of every file of a deployed change (files it created are removed); refused,
        writing nothing, when those files changed since.
        """
        return await rollback(deps(ctx), deployment_id, reason)

    @server.tool(title="Pending approvals", annotations=read_only)
    async def list_pending_approvals(ctx: Context[Services, Any]) -> PendingApprovals:
        """Changes held for approval (system-wide, or marked for review) in the tenants this key may use; decide with
        approve_change.
        """
        caller = authorize("approve")
        rows, more = await deps(ctx).changes.listing(caller, "pending_approval", MAX_PENDING)
        return PendingApprovals(changes=[summary(d) for d in rows], has_more=more)

    @server.tool(title="Approve or reject a change", annotations=destructive)
    async def approve_change(
        ctx: Context[Services, Any],
        change_id: Annotated[str, Field(min_length=1, max_length=64, description="Id from list_pending_approvals.")],
        approve: Annotated[bool, Field(description="True: write it; false: reject it.")],
        reason: Annotated[str, Field(min_length=1, max_length=2000, description="Why; kept in the audit log.")],
    ) -> ActionResult:
        """Decide a pending change: approving writes its files as one transaction (refused if they changed since it was
        proposed); rejecting writes nothing.
        """
        svc = deps(ctx)
        found, caller = await visible_deployment(svc, change_id, "approve")
        with domain_errors():
            done = await svc.changes.decide(caller, found, approve, reason)
        verb = f"deployed {len(done.paths)} files" if approve else "rejected the change; nothing was written"
        return ActionResult(deployment=summary(done), message=verb)
