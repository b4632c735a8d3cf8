"""The archive of improvement attempts in PostgreSQL, for several replicas on one database (a component's attempts
are learnt from whichever replica ran them): the same behaviour as
:class:`generators.improvement.attempts.SqliteAttemptArchive`."""

from __future__ import annotations

import json
from typing import Any

from generators.improvement.attempts import STORED_DIFF_CHARS, Attempt, AttemptOutcome
from generators.pg_db import PostgresDatabase

STORE = "attempts"
MIGRATIONS: tuple[tuple[int, str], ...] = (
    (
        1,
        """
        CREATE TABLE attempts (
            tenant TEXT NOT NULL,
            component TEXT NOT NULL,
            cycle_id TEXT NOT NULL,
            position INTEGER NOT NULL,
            number INTEGER NOT NULL,
            at DOUBLE PRECISION NOT NULL,
            outcome TEXT NOT NULL,
            reason TEXT NOT NULL,
            diff TEXT NOT NULL,
            fingerprint TEXT,
            figures TEXT NOT NULL,
            PRIMARY KEY (cycle_id, position, number)
        );
        CREATE INDEX attempts_by_component ON attempts (tenant, component, at);
        """,
    ),
)
_COLUMNS = "tenant, component, cycle_id, position, number, at, outcome, reason, diff, fingerprint, figures"
_UPDATED = ", ".join(f"{c} = EXCLUDED.{c}" for c in _COLUMNS.split(", ") if c not in ("cycle_id", "position", "number"))


class PostgresAttemptArchive:
    """:class:`generators.improvement.attempts.AttemptArchive` in PostgreSQL. Thread-safe (a connection per call)."""

    def __init__(self, db: PostgresDatabase) -> None:
        self._db = db
        db.migrate(STORE, MIGRATIONS)

    def close(self) -> None:
        """Nothing of its own to close: the database (shared by the stores) is closed by its owner."""

    def record(self, attempt: Attempt) -> None:
        a = attempt
        with self._db.transaction() as conn:
            conn.execute(
                f"INSERT INTO attempts ({_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
                f" ON CONFLICT (cycle_id, position, number) DO UPDATE SET {_UPDATED}",
                (a.tenant, a.component, a.cycle_id, a.position, a.number, a.at, a.outcome, a.reason[:2000],
                 a.diff[:STORED_DIFF_CHARS], a.fingerprint, json.dumps(a.figures, default=str)),
            )  # fmt: skip

    def settle(
        self, cycle_id: str, position: int, outcome: AttemptOutcome, reason: str, figures: dict[str, Any]
    ) -> None:
        with self._db.transaction() as conn:
            conn.execute(
                "UPDATE attempts SET outcome = %s, reason = %s, figures = %s WHERE cycle_id = %s AND position = %s"
                " AND outcome IN ('deployed', 'held')",
                (outcome, reason[:2000], json.dumps(figures, default=str), cycle_id, position),
            )

    def recent(self, tenant: str, component: str, limit: int = 50) -> list[Attempt]:
        with self._db.pool.connection() as conn:
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM attempts WHERE tenant = %s AND component = %s ORDER BY at DESC LIMIT %s",
                (tenant, component, limit),
            ).fetchall()
        return [Attempt(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], json.loads(r[10])) for r in rows]
