"""The deployer: writes a component's files into the workspace as one journaled transaction, records every byte it
replaces in the version store, commits in a git workspace, and rolls deployments back exactly.

Blocking (file I/O, fsync, SQLite, git): async callers run these methods in a worker thread. One transaction runs at a
time per deployer.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from generators.deploy import transaction
from generators.deploy.audit import AuditLog
from generators.deploy.git import GitIdentity, GitWorkspace
from generators.deploy.journal import TxnKind, remove_journal
from generators.deploy.models import Deployment, DeploymentStatus, FileVersion, sha256_hex
from generators.deploy.recovery import Recovered, Recovery, commit_deploy, commit_rollback
from generators.deploy.store import VersionStore
from generators.deploy.transaction import StepHook, Write, file_sha256, target_path
from generators.errors import (
    DeployError,
    DeploymentNotFoundError,
    EmptyChangeError,
    IntegrityError,
    InvalidStateError,
    WorkspaceChangedError,
)

logger = logging.getLogger(__name__)

JOURNAL_DIR_NAME = "deploy-journal"


class Deployer:
    """Deploys and rolls back files in one workspace."""

    def __init__(
        self,
        workspace: Path,
        data_dir: Path,
        store: VersionStore,
        audit: AuditLog,
        *,
        use_git: bool = True,
        git_identity: GitIdentity | None = None,
        clock: Callable[[], float] = time.time,
        hook: StepHook | None = None,
    ) -> None:
        self.workspace = workspace.resolve()
        self.journal_dir = data_dir / JOURNAL_DIR_NAME
        self.store = store
        self.audit = audit
        self.git = GitWorkspace.detect(self.workspace, git_identity) if use_git else None
        self._clock = clock
        self._hook = hook
        self._lock = threading.RLock()

    def recover(self) -> list[Recovered]:
        """Finish or undo transactions a crash interrupted; call once at start-up, before any deploy."""
        with self._lock:
            return Recovery(self.workspace, self.journal_dir, self.store, self.audit, self.git, self._clock).run()

    def propose(
        self,
        tenant: str,
        component: str,
        files: Mapping[str, bytes],
        *,
        actor: str,
        reason: str,
        hold_for_approval: bool = False,
        detail: Mapping[str, Any] | None = None,
        deployment_id: str | None = None,
        expected: Mapping[str, str | None] | None = None,
    ) -> Deployment:
        """Record a change (the workspace's current bytes as "previous") without writing it.

        Its status is ``pending_approval`` when held, else ``deploying`` (the caller goes on with :meth:`apply`).
        ``deployment_id`` (a new random id by default) lets a caller record the id before anything happens.

        Raises:
            UnsafePathError: a path is not a plain file path inside the workspace.
        """
        if not files:
            raise EmptyChangeError("a deployment needs at least one file; give {relative path: content}")
        self._check_expected(expected or {}, component)
        now = self._clock()
        versions = []
        for path in sorted(files):
            target = target_path(self.workspace, path)
            previous = target.read_bytes() if target.exists() else None
            versions.append(FileVersion.of(path, previous, files[path]))
        status: DeploymentStatus = "pending_approval" if hold_for_approval else "deploying"
        deployment = Deployment(
            deployment_id or uuid.uuid4().hex, tenant, component, actor, status, now, now, reason,
            paths=tuple(v.path for v in versions), detail=dict(detail or {}),
        )  # fmt: skip
        self.store.create(deployment, versions)
        self._audit("deployment_proposed", deployment, actor, {"status": status, "paths": list(deployment.paths)})
        return deployment

    def deploy(
        self,
        tenant: str,
        component: str,
        files: Mapping[str, bytes],
        *,
        actor: str,
        reason: str,
        detail: Mapping[str, Any] | None = None,
        deployment_id: str | None = None,
        expected: Mapping[str, str | None] | None = None,
    ) -> Deployment:
        """Record and write ``files`` ({relative path: bytes}) as one transaction; return the deployed record.

        ``expected`` ({path: sha256, or None for "absent"}) is what the caller based the change on: a file that no
        longer matches refuses the deploy (``WorkspaceChangedError``) instead of overwriting what changed meanwhile.

        Raises:
            UnsafePathError: a path is not a plain file path inside the workspace.
            DirtyWorkspaceError: git reports uncommitted changes to those files.
            DeployError: writing or committing failed; the workspace holds its old bytes and the record is ``failed``.
        """
        with self._lock:
            self._check_expected(expected or {}, component)
            if self.git is not None:
                self.git.check_clean(sorted(files), f"deploy {component}")
            deployment = self.propose(
                tenant, component, files, actor=actor, reason=reason, detail=detail, deployment_id=deployment_id
            )
            return self._apply(deployment, actor)

    def apply(self, deployment_id: str, *, actor: str) -> Deployment:
        """Write a ``pending_approval`` (approved) deployment.

        Raises:
            WorkspaceChangedError: a file changed since the change was proposed; generate it again.
        """
        with self._lock:
            deployment = self._get(deployment_id)
            if deployment.status != "pending_approval":
                raise InvalidStateError(f"deployment {deployment_id} is {deployment.status}, not pending_approval")
            return self._apply(deployment, actor)

    def reject(self, deployment_id: str, *, actor: str, reason: str) -> Deployment:
        """Mark a ``pending_approval`` deployment rejected; nothing is written."""
        with self._lock:
            deployment = self._get(deployment_id)
            if deployment.status != "pending_approval":
                raise InvalidStateError(f"deployment {deployment_id} is {deployment.status}, not pending_approval")
            self.store.update(deployment_id, "rejected", self._clock(), error=f"rejected by {actor}: {reason}")
            self._audit("deployment_rejected", deployment, actor, {"reason": reason})
            return self._get(deployment_id)

    def rollback(self, deployment_id: str, *, actor: str, reason: str, force: bool = False) -> Deployment:
        """Restore the exact previous bytes of every file of a deployment; delete the files it created.

        Raises:
            InvalidStateError: the deployment is not ``deployed``.
            WorkspaceChangedError: a file changed since the deployment (unless ``force``); nothing was written.
            DirtyWorkspaceError: git reports uncommitted changes to those files (unless ``force``).
            IntegrityError: stored previous content does not match its recorded sha256.
        """
        with self._lock:
            deployment = self._get(deployment_id)
            if deployment.status != "deployed":
                raise InvalidStateError(
                    f"deployment {deployment_id} is {deployment.status}; only a deployed one can be rolled back"
                )
            versions = self.store.files(deployment_id)
            _check_integrity(deployment_id, versions)
            current = {v.path: file_sha256(self.workspace / v.path) for v in versions}
            changed = sorted(v.path for v in versions if current[v.path] != v.new_sha256)
            if changed and not force:
                self._audit("rollback_refused", deployment, actor, {"reason": reason, "changed": changed})
                raise WorkspaceChangedError(
                    f"refusing to roll back deployment {deployment_id}: {changed} changed since it was deployed, "
                    "and rolling back would discard those changes. Pass force=True to restore the previous bytes "
                    "anyway.",
                    changed,
                )
            if self.git is not None and not force:
                self.git.check_clean([v.path for v in versions], f"roll back deployment {deployment_id}")
            self.store.update(deployment_id, "rolling_back", self._clock(), rollback_reason=reason)
            writes = [Write(v.path, current[v.path], v.previous) for v in versions]
            try:
                self._transact("rollback", deployment_id, writes)
            except DeployError as exc:
                self.store.update(deployment_id, "deployed", self._clock(), error=f"rollback failed: {exc}")
                self._audit("rollback_failed", deployment, actor, {"reason": reason, "error": str(exc)})
                raise
            self._verify(deployment_id, {v.path: v.previous_sha256 for v in versions})
            sha = self._commit_rollback(deployment, reason)
            self.store.update(deployment_id, "rolled_back", self._clock(), rollback_commit_sha=sha)
            remove_journal(self.journal_dir, _txn_of(deployment_id, "rollback"))
            detail = {"reason": reason, "forced": force, "changed_since_deploy": changed, "commit": sha}
            self._audit("rollback", deployment, actor, detail)
            logger.info("rolled back deployment %s (%s): %s", deployment_id, deployment.component, reason)
            return self._get(deployment_id)

    def _check_expected(self, expected: Mapping[str, str | None], component: str) -> None:
        changed = sorted(p for p, sha in expected.items() if file_sha256(target_path(self.workspace, p)) != sha)
        if changed:
            raise WorkspaceChangedError(
                f"not deploying {component}: {changed} changed since the change was generated from them; "
                "generate it again from the current files",
                changed,
            )

    def _apply(self, deployment: Deployment, actor: str) -> Deployment:
        versions = self.store.files(deployment.id)
        changed = [v.path for v in versions if file_sha256(self.workspace / v.path) != v.previous_sha256]
        if changed:
            raise WorkspaceChangedError(
                f"deployment {deployment.id}: {changed} changed since the change was proposed; generate it again",
                changed,
            )
        if self.git is not None:
            self.git.check_clean([v.path for v in versions], f"deploy {deployment.component}")
        self.store.update(deployment.id, "deploying", self._clock())
        try:
            self._transact("deploy", deployment.id, [Write(v.path, v.previous_sha256, v.new) for v in versions])
            sha = self._commit_deploy(deployment)
        except DeployError as exc:
            self.store.update(deployment.id, "failed", self._clock(), error=str(exc))
            self._audit("deployment_failed", deployment, actor, {"error": str(exc)})
            raise
        self.store.update(deployment.id, "deployed", self._clock(), commit_sha=sha)
        remove_journal(self.journal_dir, _txn_of(deployment.id, "deploy"))
        self._audit("deployment", deployment, actor, {"paths": list(deployment.paths), "commit": sha})
        logger.info("deployed %s (%s): %d files", deployment.id, deployment.component, len(versions))
        return self._get(deployment.id)

    def _commit_deploy(self, deployment: Deployment) -> str | None:
        try:
            return commit_deploy(self.git, deployment)
        except DeployError as exc:
            # A deployment is its files and its commit: without the commit, put the old bytes back.
            versions = self.store.files(deployment.id)
            undo = [Write(v.path, v.new_sha256, v.previous) for v in versions]
            remove_journal(self.journal_dir, _txn_of(deployment.id, "deploy"))
            self._transact("rollback", deployment.id, undo)
            remove_journal(self.journal_dir, _txn_of(deployment.id, "rollback"))
            raise DeployError(f"{exc} The files were restored; deployment {deployment.id} did not happen.") from exc

    def _commit_rollback(self, deployment: Deployment, reason: str) -> str | None:
        try:
            return commit_rollback(self.git, deployment, reason)
        except DeployError:
            # The previous bytes are back, which is what matters; the commit can be made by hand.
            logger.exception("rollback of %s restored the files but could not commit them", deployment.id)
            return None

    def _transact(self, kind: TxnKind, deployment_id: str, writes: Sequence[Write]) -> None:
        transaction.run(
            self.workspace, self.journal_dir, _txn_of(deployment_id, kind), kind, deployment_id, writes, self._hook
        )

    def _verify(self, deployment_id: str, expected: Mapping[str, str | None]) -> None:
        wrong = sorted(path for path, sha in expected.items() if file_sha256(self.workspace / path) != sha)
        if wrong:
            raise IntegrityError(f"after rolling back {deployment_id}, {wrong} do not hold the recorded bytes")

    def _get(self, deployment_id: str) -> Deployment:
        deployment = self.store.get(deployment_id)
        if deployment is None:
            raise DeploymentNotFoundError(f"no deployment has id {deployment_id!r}; list_deployments shows the ids")
        return deployment

    def _audit(self, kind: str, deployment: Deployment, actor: str, detail: Mapping[str, Any]) -> None:
        body = {"component": deployment.component, **detail}
        self.audit.append(kind, deployment.id, actor=actor, tenant=deployment.tenant, detail=body)


def _txn_of(deployment_id: str, kind: str) -> str:
    return f"{deployment_id}-{kind}"


def _check_integrity(deployment_id: str, versions: Sequence[FileVersion]) -> None:
    for v in versions:
        if v.previous is not None and sha256_hex(v.previous) != v.previous_sha256:
            raise IntegrityError(
                f"the stored previous content of {v.path} in deployment {deployment_id} does not match its sha256; "
                "the version store is damaged, so the rollback was not attempted"
            )
