"""The version store: every deployment and, per file, the exact bytes and sha256 before and after.

:class:`VersionStore` is the seam; :class:`SqliteVersionStore` keeps it in one SQLite file (WAL). Another database can
implement the same Protocol.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from generators.deploy.models import Deployment, DeploymentStatus, FileVersion
from generators.sqlite_db import Database

_SCHEMA = """
CREATE TABLE IF NOT EXISTS deployments (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    component TEXT NOT NULL,
    actor TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    reason TEXT NOT NULL,
    commit_sha TEXT,
    rollback_reason TEXT,
    rollback_commit_sha TEXT,
    error TEXT,
    detail TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS deployments_by_tenant ON deployments (tenant, created_at);
CREATE INDEX IF NOT EXISTS deployments_by_status ON deployments (status, created_at);
CREATE TABLE IF NOT EXISTS deployment_files (
    deployment_id TEXT NOT NULL REFERENCES deployments (id),
    path TEXT NOT NULL,
    previous_content BLOB,
    previous_sha256 TEXT,
    new_content BLOB NOT NULL,
    new_sha256 TEXT NOT NULL,
    PRIMARY KEY (deployment_id, path)
);
"""
_COLUMNS = (
    "id, tenant, component, actor, status, created_at, updated_at, reason, commit_sha, rollback_reason,"
    " rollback_commit_sha, error, detail, (SELECT group_concat(path, char(0)) FROM deployment_files"
    " WHERE deployment_id = deployments.id)"
)
UPDATABLE = ("commit_sha", "rollback_reason", "rollback_commit_sha", "error")


class VersionStore(Protocol):
    """Where deployments and their file versions are kept."""

    def create(self, deployment: Deployment, files: Sequence[FileVersion]) -> None:
        """Store a new deployment and its files in one transaction."""
        ...

    def get(self, deployment_id: str) -> Deployment | None:
        """The deployment with that id, or ``None``."""
        ...

    def files(self, deployment_id: str) -> list[FileVersion]:
        """The deployment's file versions, ordered by path."""
        ...

    def update(self, deployment_id: str, status: DeploymentStatus, at: float, **fields: str | None) -> None:
        """Set the status (and any of commit_sha, rollback_reason, rollback_commit_sha, error)."""
        ...

    def merge_detail(self, deployment_id: str, detail: Mapping[str, Any]) -> None:
        """Add ``detail``'s keys to the deployment's detail record (figures, verdicts found after creation)."""
        ...

    def list(
        self, tenant: str | None = None, status: DeploymentStatus | None = None, limit: int = 20
    ) -> tuple[list[Deployment], bool]:
        """Deployments newest first, filtered, capped at ``limit``; and whether more matched."""
        ...

    def close(self) -> None:
        """Release what it holds (its file; nothing for a store on a shared pool)."""
        ...


class SqliteVersionStore:
    """The version store in one SQLite file. Thread-safe: one connection behind a lock."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db = Database(path, _SCHEMA, foreign_keys=True)
        self._conn, self._lock = self._db.conn, self._db.lock

    def close(self) -> None:
        """Close the connection."""
        self._db.close()

    def create(self, deployment: Deployment, files: Sequence[FileVersion]) -> None:
        d = deployment
        with self._db.transaction() as conn:
            conn.execute(
                "INSERT INTO deployments (id, tenant, component, actor, status, created_at, updated_at, reason,"
                " commit_sha, rollback_reason, rollback_commit_sha, error, detail)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    d.id, d.tenant, d.component, d.actor, d.status, d.created_at, d.updated_at, d.reason,
                    d.commit_sha, d.rollback_reason, d.rollback_commit_sha, d.error, json.dumps(d.detail),
                ),
            )  # fmt: skip
            conn.executemany(
                "INSERT INTO deployment_files (deployment_id, path, previous_content, previous_sha256, new_content,"
                " new_sha256) VALUES (?, ?, ?, ?, ?, ?)",
                [(d.id, f.path, f.previous, f.previous_sha256, f.new, f.new_sha256) for f in files],
            )

    def get(self, deployment_id: str) -> Deployment | None:
        with self._lock:
            row = self._conn.execute(f"SELECT {_COLUMNS} FROM deployments WHERE id = ?", (deployment_id,)).fetchone()
        return None if row is None else _deployment(row)

    def files(self, deployment_id: str) -> list[FileVersion]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT path, previous_content, previous_sha256, new_content, new_sha256 FROM deployment_files"
                " WHERE deployment_id = ? ORDER BY path",
                (deployment_id,),
            ).fetchall()
        return [FileVersion(row[0], row[1], row[2], row[3], row[4]) for row in rows]

    def update(self, deployment_id: str, status: DeploymentStatus, at: float, **fields: str | None) -> None:
        unknown = set(fields) - set(UPDATABLE)
        if unknown:
            raise ValueError(f"cannot update {sorted(unknown)}; updatable fields are {list(UPDATABLE)}")
        assignments = "".join(f", {name} = ?" for name in fields)
        with self._db.transaction() as conn:
            conn.execute(
                f"UPDATE deployments SET status = ?, updated_at = ?{assignments} WHERE id = ?",
                (status, at, *fields.values(), deployment_id),
            )

    def merge_detail(self, deployment_id: str, detail: Mapping[str, Any]) -> None:
        with self._db.transaction() as conn:
            row = conn.execute("SELECT detail FROM deployments WHERE id = ?", (deployment_id,)).fetchone()
            if row is None:
                return
            merged = {**json.loads(row[0]), **detail}
            conn.execute(
                "UPDATE deployments SET detail = ? WHERE id = ?", (json.dumps(merged, default=str), deployment_id)
            )

    def list(
        self, tenant: str | None = None, status: DeploymentStatus | None = None, limit: int = 20
    ) -> tuple[list[Deployment], bool]:
        where: list[str] = []
        params: list[Any] = []
        if tenant is not None:
            where.append("tenant = ?")
            params.append(tenant)
        if status is not None:
            where.append("status = ?")
            params.append(status)
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        with self._lock:
            rows = self._conn.execute(
                f"SELECT {_COLUMNS} FROM deployments{clause} ORDER BY created_at DESC, rowid DESC LIMIT ?",
                (*params, limit + 1),
            ).fetchall()
        return [_deployment(row) for row in rows[:limit]], len(rows) > limit


def _deployment(row: tuple[Any, ...]) -> Deployment:
    paths = tuple(sorted(row[13].split("\0"))) if row[13] else ()
    return Deployment(
        id=row[0], tenant=row[1], component=row[2], actor=row[3], status=row[4], created_at=row[5],
        updated_at=row[6], reason=row[7], paths=paths, commit_sha=row[8], rollback_reason=row[9],
        rollback_commit_sha=row[10], error=row[11], detail=json.loads(row[12]),
    )  # fmt: skip
