"""Records of the deploy package: deployments, their file versions, and audit entries."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Literal

DeploymentStatus = Literal[
    "pending_approval", "rejected", "deploying", "deployed", "rolling_back", "rolled_back", "failed"
]
STATUSES: tuple[DeploymentStatus, ...] = (
    "pending_approval",
    "rejected",
    "deploying",
    "deployed",
    "rolling_back",
    "rolled_back",
    "failed",
)
SYSTEM_TENANT = "system"  # a change of this tenant is system-wide: it is held for approval


def sha256_hex(data: bytes) -> str:
    """The sha256 of ``data`` as 64 lowercase hex digits."""
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True, slots=True)
class FileVersion:
    """One file of a deployment: its bytes before (``None``: it did not exist) and after."""

    path: str
    previous: bytes | None
    previous_sha256: str | None
    new: bytes
    new_sha256: str

    @classmethod
    def of(cls, path: str, previous: bytes | None, new: bytes) -> FileVersion:
        """Build a version, computing both hashes."""
        return cls(path, previous, None if previous is None else sha256_hex(previous), new, sha256_hex(new))


@dataclass(frozen=True, slots=True)
class Deployment:
    """One deployment of a component's files into the workspace (a row of the version store)."""

    id: str
    tenant: str
    component: str
    actor: str
    status: DeploymentStatus
    created_at: float
    updated_at: float
    reason: str
    paths: tuple[str, ...] = ()
    commit_sha: str | None = None
    rollback_reason: str | None = None
    rollback_commit_sha: str | None = None
    error: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One row of the append-only audit log."""

    id: int
    ts: float
    actor: str
    tenant: str
    kind: str
    subject: str
    detail: dict[str, Any]


@dataclass(frozen=True, slots=True)
class AuditPage:
    """Audit entries newest first, and whether older ones matched beyond the limit."""

    entries: list[AuditEntry]
    has_more: bool
