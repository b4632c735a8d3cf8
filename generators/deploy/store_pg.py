"""The version store in PostgreSQL, for several replicas on one database: the same behaviour as
:class:`generators.deploy.store.SqliteVersionStore` (every deployment and, per file, the exact bytes and sha256 before
and after). A detail merged by two replicas at once loses neither's keys (the row is locked while it is merged)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from generators.deploy.models import Deployment, DeploymentStatus, FileVersion
from generators.deploy.store import UPDATABLE
from generators.pg_db import PostgresDatabase

STORE = "version_store"
MIGRATIONS: tuple[tuple[int, str], ...] = (
    (
        1,
        """
        CREATE TABLE deployments (
            id TEXT PRIMARY KEY,
            seq BIGSERIAL NOT NULL,
            tenant TEXT NOT NULL,
            component TEXT NOT NULL,
            actor TEXT NOT NULL,
            status TEXT NOT NULL,
            created_at DOUBLE PRECISION NOT NULL,
            updated_at DOUBLE PRECISION NOT NULL,
            reason TEXT NOT NULL,
            commit_sha TEXT,
            rollback_reason TEXT,
            rollback_commit_sha TEXT,
            error TEXT,
            detail TEXT NOT NULL DEFAULT '{}'
        );
        CREATE INDEX deployments_by_tenant ON deployments (tenant, created_at);
        CREATE INDEX deployments_by_status ON deployments (status, created_at);
        CREATE TABLE deployment_files (
            deployment_id TEXT NOT NULL REFERENCES deployments (id),
            path TEXT NOT NULL,
            previous_content BYTEA,
            previous_sha256 TEXT,
            new_content BYTEA NOT NULL,
            new_sha256 TEXT NOT NULL,
            PRIMARY KEY (deployment_id, path)
        );
        """,
    ),
)
_COLUMNS = (
    "id, tenant, component, actor, status, created_at, updated_at, reason, commit_sha, rollback_reason,"
    " rollback_commit_sha, error, detail, ARRAY(SELECT path FROM deployment_files f WHERE f.deployment_id = d.id"
    ' ORDER BY path COLLATE "C")'
)


class PostgresVersionStore:
    """:class:`generators.deploy.store.VersionStore` in PostgreSQL. Thread-safe (a connection per call)."""

    def __init__(self, db: PostgresDatabase) -> None:
        self._db = db
        db.migrate(STORE, MIGRATIONS)

    def close(self) -> None:
        """Nothing of its own to close: the database (shared by the stores) is closed by its owner."""

    def create(self, deployment: Deployment, files: Sequence[FileVersion]) -> None:
        d = deployment
        with self._db.transaction() as conn:
            conn.execute(
                "INSERT INTO deployments (id, tenant, component, actor, status, created_at, updated_at, reason,"
                " commit_sha, rollback_reason, rollback_commit_sha, error, detail)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (
                    d.id, d.tenant, d.component, d.actor, d.status, d.created_at, d.updated_at, d.reason,
                    d.commit_sha, d.rollback_reason, d.rollback_commit_sha, d.error, json.dumps(d.detail),
                ),
            )  # fmt: skip
            with conn.cursor() as cursor:
                cursor.executemany(
                    "INSERT INTO deployment_files (deployment_id, path, previous_content, previous_sha256,"
                    " new_content, new_sha256) VALUES (%s, %s, %s, %s, %s, %s)",
                    [(d.id, f.path, f.previous, f.previous_sha256, f.new, f.new_sha256) for f in files],
                )

    def get(self, deployment_id: str) -> Deployment | None:
        with self._db.pool.connection() as conn:
            row = conn.execute(f"SELECT {_COLUMNS} FROM deployments d WHERE id = %s", (deployment_id,)).fetchone()
        return None if row is None else _deployment(row)

    def files(self, deployment_id: str) -> list[FileVersion]:
        with self._db.pool.connection() as conn:
            rows = conn.execute(
                "SELECT path, previous_content, previous_sha256, new_content, new_sha256 FROM deployment_files"
                ' WHERE deployment_id = %s ORDER BY path COLLATE "C"',  # byte order, as SQLite's
                (deployment_id,),
            ).fetchall()
        return [FileVersion(r[0], None if r[1] is None else bytes(r[1]), r[2], bytes(r[3]), r[4]) for r in rows]

    def update(self, deployment_id: str, status: DeploymentStatus, at: float, **fields: str | None) -> None:
        unknown = set(fields) - set(UPDATABLE)
        if unknown:
            raise ValueError(f"cannot update {sorted(unknown)}; updatable fields are {list(UPDATABLE)}")
        assignments = "".join(f", {name} = %s" for name in fields)
        with self._db.transaction() as conn:
            conn.execute(
                f"UPDATE deployments SET status = %s, updated_at = %s{assignments} WHERE id = %s",
                (status, at, *fields.values(), deployment_id),
            )

    def merge_detail(self, deployment_id: str, detail: Mapping[str, Any]) -> None:
        with self._db.transaction() as conn:
            row = conn.execute("SELECT detail FROM deployments WHERE id = %s FOR UPDATE", (deployment_id,)).fetchone()
            if row is None:
                return
            merged = {**json.loads(row[0]), **detail}
            conn.execute(
                "UPDATE deployments SET detail = %s WHERE id = %s", (json.dumps(merged, default=str), deployment_id)
            )

    def list(
        self, tenant: str | None = None, status: DeploymentStatus | None = None, limit: int = 20
    ) -> tuple[list[Deployment], bool]:
        where: list[str] = []
        params: list[Any] = []
        for column, value in (("tenant", tenant), ("status", status)):
            if value is not None:
                where.append(f"{column} = %s")
                params.append(value)
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        with self._db.pool.connection() as conn:
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM deployments d{clause} ORDER BY created_at DESC, seq DESC LIMIT %s",
                (*params, limit + 1),
            ).fetchall()
        return [_deployment(row) for row in rows[:limit]], len(rows) > limit


def _deployment(row: tuple[Any, ...]) -> Deployment:
    return Deployment(
        id=row[0], tenant=row[1], component=row[2], actor=row[3], status=row[4], created_at=row[5],
        updated_at=row[6], reason=row[7], paths=tuple(sorted(row[13])), commit_sha=row[8], rollback_reason=row[9],
        rollback_commit_sha=row[10], error=row[11], detail=json.loads(row[12]),
    )  # fmt: skip
