"""The audit log in PostgreSQL, for several replicas on one database: the same behaviour as
:class:`generators.deploy.audit.SqliteAuditLog`, and as append-only: triggers make PostgreSQL itself refuse
``UPDATE``, ``DELETE`` and ``TRUNCATE`` on the table."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from typing import Any

from generators.deploy.audit import MAX_LIMIT
from generators.deploy.models import AuditEntry, AuditPage
from generators.pg_db import PostgresDatabase

STORE = "audit_log"
MIGRATIONS: tuple[tuple[int, str], ...] = (
    (
        1,
        """
        CREATE TABLE audit_log (
            id BIGSERIAL PRIMARY KEY,
            ts DOUBLE PRECISION NOT NULL,
            actor TEXT NOT NULL,
            tenant TEXT NOT NULL,
            kind TEXT NOT NULL,
            subject TEXT NOT NULL,
            detail TEXT NOT NULL
        );
        CREATE INDEX audit_by_time ON audit_log (ts);
        CREATE INDEX audit_by_kind ON audit_log (kind, ts);
        CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'audit_log is append-only: rows cannot be %', lower(TG_OP) || 'd';
        END $$;
        CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON audit_log
            FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
        CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
            FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();
        """,
    ),
)


class PostgresAuditLog:
    """:class:`generators.deploy.audit.AuditLog` in PostgreSQL. Thread-safe (a connection per call from the pool)."""

    def __init__(self, db: PostgresDatabase, clock: Callable[[], float] = time.time) -> None:
        self._db = db
        self._clock = clock
        db.migrate(STORE, MIGRATIONS)

    def close(self) -> None:
        """Nothing of its own to close: the database (shared by the stores) is closed by its owner."""

    def append(
        self, kind: str, subject: str, *, actor: str, tenant: str, detail: Mapping[str, Any] | None = None
    ) -> AuditEntry:
        ts = self._clock()
        text = json.dumps(dict(detail or {}), default=str, sort_keys=True)  # as the SQLite log writes it
        with self._db.transaction() as conn:
            row = conn.execute(
                "INSERT INTO audit_log (ts, actor, tenant, kind, subject, detail) VALUES (%s, %s, %s, %s, %s, %s)"
                " RETURNING id",
                (ts, actor, tenant, kind, subject, text),
            ).fetchone()
        assert row is not None
        return AuditEntry(int(row[0]), ts, actor, tenant, kind, subject, json.loads(text))

    def query(
        self, since: float | None = None, kind: str | None = None, limit: int = 50, tenant: str | None = None
    ) -> AuditPage:
        if not 1 <= limit <= MAX_LIMIT:
            raise ValueError(f"limit must be between 1 and {MAX_LIMIT}, got {limit}")
        where: list[str] = []
        params: list[Any] = []
        for column, op, value in (("ts", ">=", since), ("kind", "=", kind), ("tenant", "=", tenant)):
            if value is not None:
                where.append(f"{column} {op} %s")
                params.append(value)
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        with self._db.pool.connection() as conn:
            rows = conn.execute(
                f"SELECT id, ts, actor, tenant, kind, subject, detail FROM audit_log{clause}"
                " ORDER BY ts DESC, id DESC LIMIT %s",
                (*params, limit + 1),
            ).fetchall()
        entries = [
            AuditEntry(
                int(str(r[0])), float(str(r[1])), str(r[2]), str(r[3]), str(r[4]), str(r[5]), json.loads(str(r[6]))
            )
            for r in rows[:limit]
        ]
        return AuditPage(entries, len(rows) > limit)
