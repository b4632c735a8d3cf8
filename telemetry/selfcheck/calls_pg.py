"""Recorded tool calls in PostgreSQL, for several replicas on one database (each records its own calls; the analysis
reads them all): the same behaviour as :class:`telemetry.selfcheck.calls.SqliteCallStore`."""

from __future__ import annotations

from collections.abc import Collection, Sequence

from telemetry.selfcheck.calls import ToolCall
from telemetry.store.pg_db import PostgresDatabase

STORE = "tool_calls"
MIGRATIONS: tuple[tuple[int, str], ...] = (
    (
        1,
        """
        CREATE TABLE calls (
            id BIGSERIAL PRIMARY KEY,
            ts DOUBLE PRECISION NOT NULL,
            tool TEXT NOT NULL,
            tenant TEXT NOT NULL,
            caller TEXT NOT NULL,
            duration DOUBLE PRECISION NOT NULL,
            outcome TEXT NOT NULL,
            error_kind TEXT
        );
        CREATE INDEX calls_by_time ON calls (ts);
        CREATE INDEX calls_by_tenant_time ON calls (tenant, ts);
        """,
    ),
)
_COLUMNS = "ts, tool, tenant, caller, duration, outcome, error_kind"


class PostgresCallStore:
    """:class:`telemetry.selfcheck.calls.CallStore` in PostgreSQL. Thread-safe (a connection per call)."""

    def __init__(self, db: PostgresDatabase) -> None:
        self._db = db
        db.migrate(STORE, MIGRATIONS)

    def add(self, calls: Sequence[ToolCall]) -> None:
        if not calls:
            return
        rows = [(c.ts, c.tool, c.tenant, c.caller, c.duration, c.outcome, c.error_kind) for c in calls]
        with self._db.transaction() as conn, conn.cursor() as cursor:
            cursor.executemany(f"INSERT INTO calls ({_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s)", rows)

    def calls(
        self, *, start: float, end: float, tenants: Collection[str] | None = None, limit: int = 200_000
    ) -> tuple[list[ToolCall], int]:
        where = "ts >= %s AND ts <= %s"
        params: list[object] = [start, end]
        if tenants is not None:
            where += " AND tenant = ANY(%s)"
            params.append(list(tenants))
        with self._db.transaction() as conn:  # one snapshot for the count and the rows
            total = conn.execute(f"SELECT COUNT(*) FROM calls WHERE {where}", params).fetchone()
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM calls WHERE {where} ORDER BY ts DESC, id DESC LIMIT %s", [*params, limit]
            ).fetchall()
        rows.reverse()
        return [ToolCall(*row) for row in rows], int(total[0]) if total else 0

    def prune(self, older_than: float) -> int:
        with self._db.transaction() as conn:
            return conn.execute("DELETE FROM calls WHERE ts < %s", (older_than,)).rowcount

    def close(self) -> None:
        """Nothing of its own to close: the database (shared by the stores) is closed by its owner."""
