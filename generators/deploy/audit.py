"""The audit log: an append-only SQLite table of who did what, when, for which tenant.

There is no update or delete API, and triggers make SQLite itself refuse ``UPDATE`` and ``DELETE`` on the table, so a
row once written stays as written. :class:`AuditLog` is the seam; :class:`SqliteAuditLog` may share the version
store's file or have its own.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

from generators.deploy.models import AuditEntry, AuditPage
from generators.sqlite_db import Database

_SCHEMA = """
CREATE TABLE IF NOT EXISTS audit_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts REAL NOT NULL,
    actor TEXT NOT NULL,
    tenant TEXT NOT NULL,
    kind TEXT NOT NULL,
    subject TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_by_time ON audit_log (ts);
CREATE INDEX IF NOT EXISTS audit_by_kind ON audit_log (kind, ts);
CREATE TRIGGER IF NOT EXISTS audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only: rows cannot be updated'); END;
CREATE TRIGGER IF NOT EXISTS audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only: rows cannot be deleted'); END;
"""
MAX_LIMIT = 500


class AuditLog(Protocol):
    """Append-only record of generation requests, validations, deployments, rollbacks and approvals."""

    def append(
        self, kind: str, subject: str, *, actor: str, tenant: str, detail: Mapping[str, Any] | None = None
    ) -> AuditEntry:
        """Record one entry and return it with its id and time."""
        ...

    def query(
        self, since: float | None = None, kind: str | None = None, limit: int = 50, tenant: str | None = None
    ) -> AuditPage:
        """Entries at or after ``since`` (Unix time), of ``kind``, newest first, at most ``limit``."""
        ...

    def close(self) -> None:
        """Release what it holds (its file; nothing for a log on a shared pool)."""
        ...


class SqliteAuditLog:
    """The audit log in a SQLite file (WAL). Thread-safe: one connection behind a lock."""

    def __init__(self, path: Path, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self._clock = clock
        self._db = Database(path, _SCHEMA)
        self._conn, self._lock = self._db.conn, self._db.lock

    def close(self) -> None:
        """Close the connection."""
        self._db.close()

    def append(
        self, kind: str, subject: str, *, actor: str, tenant: str, detail: Mapping[str, Any] | None = None
    ) -> AuditEntry:
        ts = self._clock()
        body = dict(detail or {})
        # default=str: an audit entry is never lost to a value JSON cannot encode (a Path, an exception).
        text = json.dumps(body, default=str, sort_keys=True)
        with self._db.transaction() as conn:
            cursor = conn.execute(
                "INSERT INTO audit_log (ts, actor, tenant, kind, subject, detail) VALUES (?, ?, ?, ?, ?, ?)",
                (ts, actor, tenant, kind, subject, text),
            )
        assert cursor.lastrowid is not None
        return AuditEntry(cursor.lastrowid, ts, actor, tenant, kind, subject, json.loads(text))

    def query(
        self, since: float | None = None, kind: str | None = None, limit: int = 50, tenant: str | None = None
    ) -> AuditPage:
        if not 1 <= limit <= MAX_LIMIT:
            raise ValueError(f"limit must be between 1 and {MAX_LIMIT}, got {limit}")
        where: list[str] = []
        params: list[Any] = []
        for column, op, value in (("ts", ">=", since), ("kind", "=", kind), ("tenant", "=", tenant)):
            if value is not None:
                where.append(f"{column} {op} ?")
                params.append(value)
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        with self._lock:
            rows = self._conn.execute(
                f"SELECT id, ts, actor, tenant, kind, subject, detail FROM audit_log{clause}"
                " ORDER BY ts DESC, id DESC LIMIT ?",
                (*params, limit + 1),
            ).fetchall()
        entries = [AuditEntry(r[0], r[1], r[2], r[3], r[4], r[5], json.loads(r[6])) for r in rows[:limit]]
        return AuditPage(entries, len(rows) > limit)
