"""Improvement cycles in PostgreSQL, for several replicas on one database: the same behaviour as
:class:`generators.improvement.store.SqliteCycleStore`. A candidate's compare-and-set holds its row while it checks
and writes, so two replicas deciding one candidate at once cannot both win.

A cycle's owner is the replica that runs it; the lease holder adopts the cycles of replicas that are gone."""

from __future__ import annotations

import json
import uuid
from collections.abc import Collection

from generators.errors import CycleTakenOverError, IllegalTransitionError
from generators.improvement.models import CandidateRecord, CandidateStatus, CycleRecord, CycleStatus, LeftOutEntry
from generators.improvement.store import (
    ACTIVE_CANDIDATE_STATUSES,
    CANDIDATE_COLUMNS,
    CYCLE_COLUMNS,
    CYCLES_JOINED,
    ORPHANED_CANDIDATES,
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
    (2, "ALTER TABLE cycles ADD COLUMN owner TEXT"),
)
_CANDIDATE_UPDATE = ", ".join(
    f"{c} = EXCLUDED.{c}" for c in CANDIDATE_COLUMNS.split(", ") if c not in ("cycle_id", "position")
)


class PostgresCycleStore:
    """:class:`generators.improvement.store.CycleStore` in PostgreSQL. Thread-safe (a connection per call)."""

    def __init__(self, db: PostgresDatabase, *, owner: str | None = None) -> None:
        self._db = db
        self.owner = owner or uuid.uuid4().hex
        db.migrate(STORE, MIGRATIONS)

    def close(self) -> None:
        """Nothing of its own to close: the database (shared by the stores) is closed by its owner."""

    def create(self, cycle: CycleRecord) -> None:
        c = cycle
        with self._db.transaction() as conn:
            conn.execute(
                "INSERT INTO cycles (id, tenant, actor, trigger, status, started_at, updated_at, finished_at, params,"
                " error, owner) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (c.id, c.tenant, c.actor, c.trigger, c.status, c.started_at, c.updated_at, c.finished_at,
                 json.dumps(c.params), c.error, self.owner),
            )  # fmt: skip

    def save_candidate(self, candidate: CandidateRecord, was: CandidateStatus | None = None) -> None:
        """As :meth:`SqliteCycleStore.save_candidate`: with ``was``, only if the stored one still has that status;
        without, never for a cycle another server interrupted."""
        c = candidate
        with self._db.transaction() as conn:
            if was is None:  # the cycle's row locked: an interrupt by the adopting replica waits, or went first
                cycle = conn.execute("SELECT status FROM cycles WHERE id = %s FOR UPDATE", (c.cycle_id,)).fetchone()
                if cycle is not None and cycle[0] == "interrupted":
                    raise CycleTakenOverError(c.cycle_id, cycle[0])
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
                " WHERE id = %s AND status <> 'interrupted'",  # another server took it over: its record stands
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

    def orphans(self, alive: Collection[str]) -> list[CycleRecord]:
        with self._db.transaction() as conn:
            ids = [r[0] for r in conn.execute(
                "SELECT id FROM cycles WHERE (owner IS NULL OR NOT owner = ANY(%s)) AND (status = 'running' OR id IN"
                f" (SELECT cycle_id FROM candidates WHERE status IN {ORPHANED_CANDIDATES})) ORDER BY started_at",
                (list(alive),),
            )]  # fmt: skip
        return [c for c in map(self.get, ids) if c is not None]

    def adopt(self, cycle_id: str, alive: Collection[str]) -> bool:
        with self._db.transaction() as conn:
            cursor = conn.execute(
                "UPDATE cycles SET owner = %s WHERE id = %s AND (owner IS NULL OR NOT owner = ANY(%s))",
                (self.owner, cycle_id, list(alive)),
            )
        return cursor.rowcount == 1

    def interrupt(self, cycle_id: str, at: float) -> bool:
        with self._db.transaction() as conn:
            cursor = conn.execute(
                "UPDATE cycles SET status = 'interrupted', updated_at = %s, finished_at = %s,"
                " error = 'the server stopped while this cycle ran' WHERE id = %s AND status = 'running'",
                (at, at, cycle_id),
            )
            conn.execute(
                "UPDATE candidates SET status = 'interrupted', updated_at = %s"
                " WHERE cycle_id = %s AND status IN ('queued', 'generating')",
                (at, cycle_id),
            )
        return cursor.rowcount == 1
