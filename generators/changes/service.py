"""Deployed changes as their users see them.

:class:`ChangeService` answers who may see which deployment (a deployment of a tenant the viewer may not use is not
found, so ids do not leak across tenants), lists them, rolls one back and decides a held change. Each use case writes
its audit entries; a decision is then handed to the listeners registered with :meth:`ChangeService.on_decision` (the
improvement cycle monitors an approved change of its own, and settles a rejected one). Roles are the front end's
concern: it checks them before it calls here.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

import anyio
import anyio.to_thread

from generators.deploy import (
    AuditLog,
    Deployer,
    DeployError,
    Deployment,
    DeploymentNotFoundError,
    DeploymentStatus,
    InvalidStateError,
    VersionStore,
    WorkspaceChangedError,
)
from generators.errors import failure_text, quoted

logger = logging.getLogger(__name__)

DecisionListener = Callable[[Deployment], Awaitable[None]]
"""Told of every approved (now ``deployed``, or ``failed``) or rejected change, once it is recorded."""


class Viewer(Protocol):
    """Who asks: a key's name and the tenants it may use."""

    @property
    def name(self) -> str: ...

    @property
    def tenants(self) -> frozenset[str]: ...

    @property
    def all_tenants(self) -> bool: ...

    def may_use(self, tenant: str) -> bool: ...


class ChangeService:
    """One per server, owned by the lifespan; every method may be called from the event loop."""

    def __init__(self, deployer: Deployer, versions: VersionStore, audit: AuditLog) -> None:
        self.deployer = deployer
        self.versions = versions
        self.audit = audit
        self._listeners: list[DecisionListener] = []

    def on_decision(self, listener: DecisionListener) -> None:
        self._listeners.append(listener)

    async def visible(self, viewer: Viewer, deployment_id: str) -> Deployment:
        """The deployment, if ``viewer`` may use its tenant.

        Raises:
            DeploymentNotFoundError: no deployment has that id, or it is another tenant's.
        """
        found = await anyio.to_thread.run_sync(self.versions.get, deployment_id)
        if found is None or not viewer.may_use(found.tenant):
            raise DeploymentNotFoundError(
                f"no deployment has id {quoted(deployment_id)}; list_deployments shows the ids"
            )
        return found

    async def listing(
        self, viewer: Viewer, status: DeploymentStatus | None, limit: int
    ) -> tuple[list[Deployment], bool]:
        """Deployments of the tenants ``viewer`` may use (in ``status`` when given), newest first, at most ``limit``;
        and whether more matched."""
        return await anyio.to_thread.run_sync(self._listing, viewer, status, limit)

    def _listing(self, viewer: Viewer, status: DeploymentStatus | None, limit: int) -> tuple[list[Deployment], bool]:
        if viewer.all_tenants:
            return self.versions.list(None, status, limit)
        found: list[Deployment] = []
        more = False
        for tenant in sorted(viewer.tenants):
            rows, tenant_more = self.versions.list(tenant, status, limit)
            found += rows
            more = more or tenant_more
        found.sort(key=lambda d: d.created_at, reverse=True)
        return found[:limit], more or len(found) > limit

    async def rollback(self, viewer: Viewer, deployment: Deployment, reason: str) -> Deployment:
        """Restore the exact previous bytes of every file of a deployment ``viewer`` may see (``visible`` first),
        audited by the deployer.

        Raises:
            WorkspaceChangedError: its files changed since; nothing was written.
            DeployError: it is not deployed, or restoring failed.
        """
        deployment_id = deployment.id
        rollback = functools.partial(self.deployer.rollback, deployment_id, actor=viewer.name, reason=reason)
        try:
            return await anyio.to_thread.run_sync(rollback)
        except WorkspaceChangedError as exc:
            raise WorkspaceChangedError(
                f"rollback of deployment {deployment_id} refused, nothing was written: {exc.paths} changed since it "
                "was deployed and rolling back would discard those changes. get_deployment shows the deployed and "
                "current sha256 of each file; a person must reconcile those files by hand.",
                exc.paths,
            ) from exc

    async def decide(self, viewer: Viewer, change: Deployment, approve: bool, reason: str) -> Deployment:
        """Decide a held change ``viewer`` may see (``visible`` first): the decision is audited, then the change is
        applied as one transaction or rejected, and the listeners are told. Shielded: a caller who goes away must
        not leave a deployed change unmonitored.

        Raises:
            InvalidStateError: the change is not pending approval (nothing is audited then).
            DeployError: applying it failed (audited as ``approval_failed``).
        """
        with anyio.CancelScope(shield=True):
            done = await anyio.to_thread.run_sync(self._decide, viewer, change, approve, reason)
            for listener in self._listeners:
                try:
                    await listener(done)
                except Exception as exc:  # the decision stands: a listener's failure is its own, logged
                    failure_text(exc, logger, f"telling of the decision on {done.id}")
        return done

    def _decide(self, viewer: Viewer, change: Deployment, approve: bool, reason: str) -> Deployment:
        if change.status != "pending_approval":
            # The deployer refuses too; checking first keeps a decision on a settled change out of the audit log.
            raise InvalidStateError(
                f"change {change.id} is {change.status}, not pending_approval; list_pending_approvals shows open "
                "changes"
            )
        self.audit.append(
            "approval_decision", change.id, actor=viewer.name, tenant=change.tenant,
            detail={"approve": approve, "reason": reason, "component": change.component},
        )  # fmt: skip
        if not approve:
            return self.deployer.reject(change.id, actor=viewer.name, reason=reason)
        try:
            return self.deployer.apply(change.id, actor=viewer.name)
        except DeployError as exc:
            self.audit.append(
                "approval_failed", change.id, actor=viewer.name, tenant=change.tenant,
                detail={"error": str(exc), "component": change.component},
            )  # fmt: skip
            raise


def restored(done: Deployment) -> str:
    """What a rollback did, in the words every front end answers with."""
    return f"restored the previous bytes of {len(done.paths)} files"
