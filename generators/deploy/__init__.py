"""Deploying generated code: journaled atomic multi-file writes, the version store, git commits, exact rollback,
start-up recovery, and the append-only audit log."""

from generators.deploy.audit import AuditLog, SqliteAuditLog
from generators.deploy.deployer import Deployer
from generators.deploy.git import GitIdentity
from generators.deploy.models import SYSTEM_TENANT, AuditEntry, AuditPage, Deployment, DeploymentStatus, FileVersion
from generators.deploy.recovery import Recovered
from generators.deploy.store import SqliteVersionStore, VersionStore
from generators.errors import (
    DeployError,
    DeploymentNotFoundError,
    DirtyWorkspaceError,
    IntegrityError,
    InvalidStateError,
    RecoveryError,
    UnsafePathError,
    WorkspaceChangedError,
)

__all__ = [
    "SYSTEM_TENANT",
    "AuditEntry",
    "AuditLog",
    "AuditPage",
    "DeployError",
    "Deployer",
    "Deployment",
    "DeploymentNotFoundError",
    "DeploymentStatus",
    "DirtyWorkspaceError",
    "FileVersion",
    "GitIdentity",
    "IntegrityError",
    "InvalidStateError",
    "Recovered",
    "RecoveryError",
    "SqliteAuditLog",
    "SqliteVersionStore",
    "UnsafePathError",
    "VersionStore",
    "WorkspaceChangedError",
]
