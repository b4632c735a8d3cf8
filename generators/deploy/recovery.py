"""Start-up recovery: finish or undo transactions a crash interrupted, and settle the deployments they belong to.

After :func:`generators.deploy.transaction.resolve` has made every file of a transaction all-old or all-new, the
deployment's status follows from the bytes on disk: all new → ``deployed`` (committed in a git workspace); all
previous → ``rolled_back`` when a rollback was under way, else ``failed``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from generators.deploy import transaction
from generators.deploy.audit import AuditLog
from generators.deploy.git import GitWorkspace
from generators.deploy.journal import Journal, read_journals, remove_journal
from generators.deploy.models import Deployment, DeploymentStatus
from generators.deploy.store import VersionStore
from generators.deploy.transaction import file_sha256
from generators.errors import DeployError, RecoveryError

logger = logging.getLogger(__name__)

RECOVERY_ACTOR = "recovery"


@dataclass(frozen=True, slots=True)
class Recovered:
    """What recovery did with one deployment."""

    deployment_id: str
    outcome: Literal["forward", "back", "settled", "unresolved"]
    status: DeploymentStatus | None
    detail: str


def deploy_marker(deployment_id: str) -> str:
    """The tag in a deployment's commit message (found again after a crash)."""
    return f"[deployment {deployment_id}]"


def rollback_marker(deployment_id: str) -> str:
    """The tag in a rollback's commit message."""
    return f"[rollback {deployment_id}]"


def commit_deploy(git: GitWorkspace | None, deployment: Deployment) -> str | None:
    """Commit a deployment's files (``None`` outside git). Raises ``DeployError`` when git fails."""
    if git is None:
        return None
    message = f"Deploy {deployment.component} {deploy_marker(deployment.id)}\n\n{deployment.reason}"
    return git.commit(list(deployment.paths), message, deploy_marker(deployment.id))


def commit_rollback(git: GitWorkspace | None, deployment: Deployment, reason: str) -> str | None:
    """Commit a rollback's files (``None`` outside git). Raises ``DeployError`` when git fails."""
    if git is None:
        return None
    message = f"Roll back {deployment.component} {rollback_marker(deployment.id)}\n\n{reason}"
    return git.commit(list(deployment.paths), message, rollback_marker(deployment.id))


class Recovery:
    """Recovery over one workspace's journal folder, version store, audit log and git."""

    def __init__(
        self,
        workspace: Path,
        journal_dir: Path,
        store: VersionStore,
        audit: AuditLog,
        git: GitWorkspace | None,
        clock: Callable[[], float],
    ) -> None:
        self.workspace = workspace
        self.journal_dir = journal_dir
        self.store = store
        self.audit = audit
        self.git = git
        self._clock = clock

    def run(self) -> list[Recovered]:
        """Resolve every journal left behind, then settle deployments stuck mid-way without one."""
        results = [self._journal(journal) for journal in read_journals(self.journal_dir)]
        for status in ("deploying", "rolling_back"):
            stuck, _ = self.store.list(status=status, limit=10_000)
            results.extend(self._settle(d, "settled") for d in stuck)
        for result in results:
            logger.warning("recovered deployment %s: %s (%s)", result.deployment_id, result.outcome, result.detail)
        return results

    def _journal(self, journal: Journal) -> Recovered:
        try:
            outcome = transaction.resolve(self.workspace, self.journal_dir, journal)
        except RecoveryError as exc:
            logger.error("%s", exc)
            return Recovered(journal.deployment_id, "unresolved", None, str(exc))
        deployment = self.store.get(journal.deployment_id)
        if deployment is None or deployment.status not in ("deploying", "rolling_back"):
            remove_journal(self.journal_dir, journal.txn_id)
            return Recovered(
                journal.deployment_id, outcome, None if deployment is None else deployment.status, "tidied"
            )
        if journal.kind == "rollback" and outcome == "back" and deployment.status == "rolling_back":
            note = "rollback interrupted by a crash before any file was written; the deployed files were kept"
            self.store.update(deployment.id, "deployed", self._clock(), error=note)
            remove_journal(self.journal_dir, journal.txn_id)
            self._audit(deployment, "deployed", outcome, note)
            return Recovered(deployment.id, outcome, "deployed", note)
        result = self._settle(deployment, outcome)
        if result.outcome != "unresolved":
            remove_journal(self.journal_dir, journal.txn_id)
        return result

    def _settle(self, deployment: Deployment, outcome: Literal["forward", "back", "settled"]) -> Recovered:
        versions = self.store.files(deployment.id)
        current = {v.path: file_sha256(self.workspace / v.path) for v in versions}
        if all(current[v.path] == v.new_sha256 for v in versions):
            status: DeploymentStatus = "deployed"
            note = (
                "rollback interrupted before any file was written; the deployed files were kept"
                if deployment.status == "rolling_back"
                else "interrupted deployment completed on recovery"
            )
            sha = self._commit(commit_deploy, deployment)
            self.store.update(deployment.id, status, self._clock(), commit_sha=sha)
        elif all(current[v.path] == v.previous_sha256 for v in versions):
            if deployment.status == "rolling_back":
                status, note = "rolled_back", "interrupted rollback completed on recovery"
                sha = self._commit(commit_rollback, deployment, deployment.rollback_reason or "")
                self.store.update(deployment.id, status, self._clock(), rollback_commit_sha=sha)
            else:
                status, note = "failed", "deployment interrupted by a crash; the previous files were kept"
                self.store.update(deployment.id, status, self._clock(), error=note)
        else:
            mixed = sorted(current)
            note = f"files {mixed} hold neither all deployed nor all previous bytes; inspect them"
            logger.error("deployment %s: %s", deployment.id, note)
            return Recovered(deployment.id, "unresolved", deployment.status, note)
        self._audit(deployment, status, outcome, note)
        return Recovered(deployment.id, outcome, status, note)

    def _commit(self, commit: Callable[..., str | None], deployment: Deployment, *args: str) -> str | None:
        try:
            return commit(self.git, deployment, *args)
        except DeployError:
            logger.exception("recovery of %s could not commit; commit the files by hand", deployment.id)
            return None

    def _audit(self, deployment: Deployment, status: DeploymentStatus, outcome: str, note: str) -> None:
        detail = {"component": deployment.component, "status": status, "outcome": outcome, "note": note}
        self.audit.append("recovery", deployment.id, actor=RECOVERY_ACTOR, tenant=deployment.tenant, detail=detail)
