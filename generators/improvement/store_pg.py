"""Improvement cycles in PostgreSQL, for several replicas on one database: the same behaviour as
:class:`generators.improvement.store.SqliteCycleStore`. A candidate's compare-and-set holds its row while it checks
and writes, so two replicas deciding one candidate at once cannot both win.

(``mark_interrupted`` still marks every running cycle, as one server's restart does; with several replicas the cycle's
owner and its lease decide that: issue 17's third step.)"""

from __future__ import annotations

import json

from generators.errors import IllegalTransitionError
from generators.improvement.models import CandidateRecord, CandidateStatus, CycleRecord, CycleStatus, LeftOutEntry
from generators.improvement.store import (
    ACTIVE_CANDIDATE_STATUSES,
    CANDIDATE_COLUMNS,
    CYCLE_COLUMNS,
    CYCLES_JOINED,
    candidate_from_row,
    cycle_from_row,
)
from generators.pg_db import PostgresDatabase

STORE = "improvement_cycles"
MIGRATIONS: tuple[tuple[int, str], ...] = (
    (
        1,
        """
        CREATE TABLE cycles (
            id TEXT PRIMARY KEY,
            tenant TEXT NOT NULL,
            actor TEXT NOT NULL,
            trigger TEXT NOT NULL,
            status TEXT NOT NULL,
            started_at DOUBLE PRECISION NOT NULL,
            updated_at DOUBLE PRECISION NOT NULL,
            finished_at DOUBLE PRECISION,
            params TEXT NOT NULL,
            error TEXT
        );
        CREATE INDEX cycles_by_tenant ON cycles (tenant, started_at);
        CREATE TABLE candidates (
            cycle_id TEXT NOT NULL REFERENCES cycles (id),
            position INTEGER NOT NULL,
            component TEXT NOT NULL,
            metric TEXT NOT NULL,
            status TEXT NOT NULL,
            updated_at DOUBLE PRECISION NOT NULL,
            deployment_id TEXT,
            monitor_until DOUBLE PRECISION,
            detail TEXT NOT NULL,
            PRIMARY KEY (cycle_id, position)
        );
        CREATE INDEX candidates_by_status ON candidates (status);
        CREATE INDEX candidates_by_deployment ON candidates (deployment_id);
        CREATE TABLE left_out (
            cycle_id TEXT PRIMARY KEY REFERENCES cycles (id),
            total INTEGER NOT NULL,
            entries TEXT NOT NULL
        );
        """,
    ),
)
_CANDIDATE_UPDATE = ", ".join(
    f"{c} = EXCLUDED.{c}" for c in CANDIDATE_COLUMNS.split(", ") if c not in ("cycle_id", "position")
)


class PostgresCycleStore:
    """:class:`generators.improvement.store.CycleStore` in PostgreSQL. Thread-safe (a connection per call)."""

    def __init__(self, db: PostgresDatabase) -> None:
        self._db = db
        db.migrate(STORE, MIGRATIONS)

    def close(self) -> None:
        """Nothing of its own to close: the database (shared by the stores) is closed by its owner."""

    def create(self, cycle: CycleRecord) -> None:
        c = cycle
        with self._db.transaction() as conn:
            conn.execute(
                "INSERT INTO cycles (id, tenant, actor, trigger, status, started_at, updated_at, finished_at, params,"
                " error) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (c.id, c.tenant, c.actor, c.trigger, c.status, c.started_at, c.updated_at, c.finished_at,
                 json.dumps(c.params), c.error),
            )  # fmt: skip

    def save_candidate(self, candidate: CandidateRecord, was: CandidateStatus | None = None) -> None:
        """As :meth:`SqliteCycleStore.save_candidate`: with ``was``, only if the stored one still has that status."""
        c = candidate
        with self._db.transaction() as conn:
            if was is not None:
                row = conn.execute(
                    "SELECT status FROM candidates WHERE cycle_id = %s AND position = %s FOR UPDATE",
                    (c.cycle_id, c.position),
                ).fetchone()
                if row is not None and row[0] != was:
                    raise IllegalTransitionError(
                        f"candidate {c.position} of cycle {c.cycle_id} ({c.component}) is {row[0]}, not {was}: "
                        f"another step moved it, so it does not go to {c.status}"
                    )
            conn.execute(
                f"INSERT INTO candidates ({CANDIDATE_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
                f" ON CONFLICT (cycle_id, position) DO UPDATE SET {_CANDIDATE_UPDATE}",
                (c.cycle_id, c.position, c.component, c.metric, c.status, c.updated_at, c.deployment_id,
                 c.monitor_until, json.dumps(c.detail, default=str)),
            )  # fmt: skip
            conn.execute(
                "UPDATE cycles SET updated_at = GREATEST(updated_at, %s) WHERE id = %s", (c.updated_at, c.cycle_id)
            )

    def finish(self, cycle_id: str, status: CycleStatus, at: float, error: str | None = None) -> None:
        with self._db.transaction() as conn:
            conn.execute(
                "UPDATE cycles SET status = %s, updated_at = %s, finished_at = COALESCE(finished_at, %s), error = %s"
                " WHERE id = %s",
                (status, at, at, error, cycle_id),
            )

    def set_left_out(self, cycle_id: str, entries: list[LeftOutEntry], total: int) -> None:
        with self._db.transaction() as conn:
            conn.execute(
                "INSERT INTO left_out (cycle_id, total, entries) VALUES (%s, %s, %s)"
                " ON CONFLICT (cycle_id) DO UPDATE SET total = EXCLUDED.total, entries = EXCLUDED.entries",
                (cycle_id, total, json.dumps(entries, default=str)),
            )

    def get(self, cycle_id: str) -> CycleRecord | None:
        with self._db.transaction() as conn:  # one snapshot for the cycle and its candidates
            row = conn.execute(f"SELECT {CYCLE_COLUMNS} FROM {CYCLES_JOINED} WHERE id = %s", (cycle_id,)).fetchone()
            if row is None:
                return None
            cycle = cycle_from_row(row)
            rows = conn.execute(
                f"SELECT {CANDIDATE_COLUMNS} FROM candidates WHERE cycle_id = %s ORDER BY position", (cycle_id,)
            ).fetchall()
        cycle.candidates = [candidate_from_row(r) for r in rows]
        return cycle

    def by_status(self, status: CandidateStatus) -> list[CandidateRecord]:
        with self._db.pool.connection() as conn:
            rows = conn.execute(f"SELECT {CANDIDATE_COLUMNS} FROM candidates WHERE status = %s", (status,)).fetchall()
        return [candidate_from_row(r) for r in rows]

    def by_deployment(self, deployment_id: str) -> CandidateRecord | None:
        with self._db.pool.connection() as conn:
            row = conn.execute(
                f"SELECT {CANDIDATE_COLUMNS} FROM candidates WHERE deployment_id = %s", (deployment_id,)
            ).fetchone()
        return None if row is None else candidate_from_row(row)

    def active(self, limit: int) -> tuple[list[CycleRecord], bool]:
        with self._db.transaction() as conn:
            rows = conn.execute(
                f"SELECT {CYCLE_COLUMNS} FROM {CYCLES_JOINED} WHERE status = 'running' OR id IN"
                " (SELECT cycle_id FROM candidates WHERE status = ANY(%s)) ORDER BY started_at DESC LIMIT %s",
                (list(ACTIVE_CANDIDATE_STATUSES), limit + 1),
            ).fetchall()
            cycles = [cycle_from_row(r) for r in rows[:limit]]
            candidates = conn.execute(
                f"SELECT {CANDIDATE_COLUMNS} FROM candidates WHERE cycle_id = ANY(%s) ORDER BY cycle_id, position",
                ([c.id for c in cycles],),
            ).fetchall()
        by_cycle = {c.id: c for c in cycles}
        for row in candidates:
            candidate = candidate_from_row(row)
            by_cycle[candidate.cycle_id].candidates.append(candidate)
        return cycles, len(rows) > limit

    def tallies(self) -> dict[str, dict[str, int]]:
        with self._db.transaction() as conn:
            cycles = conn.execute("SELECT status, COUNT(*) FROM cycles GROUP BY status").fetchall()
            candidates = conn.execute("SELECT status, COUNT(*) FROM candidates GROUP BY status").fetchall()
        return {"cycles": {s: int(n) for s, n in cycles}, "candidates": {s: int(n) for s, n in candidates}}

    def mark_interrupted(self, at: float) -> list[str]:
        with self._db.transaction() as conn:
            ids = [r[0] for r in conn.execute("SELECT id FROM cycles WHERE status = 'running' FOR UPDATE").fetchall()]
            conn.execute(
                "UPDATE cycles SET status = 'interrupted', updated_at = %s, finished_at = %s,"
                " error = 'the server stopped while this cycle ran' WHERE status = 'running'",
                (at, at),
            )
            conn.execute(
                "UPDATE candidates SET status = 'interrupted', updated_at = %s"
                " WHERE status IN ('queued', 'generating')",
                (at,),
            )
        return ids
