"""Where cycles are kept, so an interrupted one is reported as such after a restart and its deployments are still
monitored. :class:`CycleStore` is the seam; :class:`SqliteCycleStore` keeps it in one SQLite file (WAL)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Collection
from pathlib import Path
from typing import Any, Protocol

import anyio.to_thread

from generators.errors import CycleTakenOverError, IllegalTransitionError
from generators.improvement.models import CandidateRecord, CandidateStatus, CycleRecord, CycleStatus, LeftOutEntry
from generators.sqlite_db import Database

_SCHEMA = """
CREATE TABLE IF NOT EXISTS cycles (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    actor TEXT NOT NULL,
    trigger TEXT NOT NULL,
    status TEXT NOT NULL,
    started_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    finished_at REAL,
    params TEXT NOT NULL,
    error TEXT
);
CREATE INDEX IF NOT EXISTS cycles_by_tenant ON cycles (tenant, started_at);
CREATE TABLE IF NOT EXISTS candidates (
    cycle_id TEXT NOT NULL REFERENCES cycles (id),
    position INTEGER NOT NULL,
    component TEXT NOT NULL,
    metric TEXT NOT NULL,
    status TEXT NOT NULL,
    updated_at REAL NOT NULL,
    deployment_id TEXT,
    monitor_until REAL,
    detail TEXT NOT NULL,
    PRIMARY KEY (cycle_id, position)
);
CREATE INDEX IF NOT EXISTS candidates_by_status ON candidates (status);
CREATE INDEX IF NOT EXISTS candidates_by_deployment ON candidates (deployment_id);
CREATE TABLE IF NOT EXISTS left_out (
    cycle_id TEXT PRIMARY KEY REFERENCES cycles (id),
    total INTEGER NOT NULL,
    entries TEXT NOT NULL
);
"""


class CycleStore(Protocol):
    """Persistence of cycles and their candidates. Blocking: async callers use a worker thread.

    Each cycle has an owner, the server (replica) that runs it or watches its change: the store's ``owner`` when it
    was created or adopted. A cycle whose owner is gone (a stopped server; a replica whose lease ended) is an orphan
    that the lease holder adopts — exactly one can, compare-and-set — and then resumes or marks interrupted.
    """

    @property
    def owner(self) -> str:
        """This server's name in the cycles it owns."""
        ...

    def create(self, cycle: CycleRecord) -> None: ...
    def save_candidate(self, candidate: CandidateRecord, was: CandidateStatus | None = None) -> None: ...
    def finish(self, cycle_id: str, status: CycleStatus, at: float, error: str | None = None) -> None: ...
    def set_left_out(self, cycle_id: str, entries: list[LeftOutEntry], total: int) -> None: ...
    def get(self, cycle_id: str) -> CycleRecord | None: ...
    def by_status(self, status: CandidateStatus) -> list[CandidateRecord]: ...
    def by_deployment(self, deployment_id: str) -> CandidateRecord | None: ...
    def active(self, limit: int) -> tuple[list[CycleRecord], bool]: ...
    def orphans(self, alive: Collection[str]) -> list[CycleRecord]: ...
    def adopt(self, cycle_id: str, alive: Collection[str]) -> bool: ...
    def interrupt(self, cycle_id: str, at: float) -> bool: ...
    def tallies(self) -> dict[str, dict[str, int]]: ...
    def close(self) -> None: ...


class AsyncCycles:
    """The cycle store for the event loop, built once per service: each call runs the blocking store in a worker
    thread (as the monitoring event store does), so callers never block the loop on SQLite."""

    def __init__(self, store: CycleStore) -> None:
        self.store = store
        self.owner = store.owner

    async def create(self, cycle: CycleRecord) -> None:
        await anyio.to_thread.run_sync(self.store.create, cycle)

    async def save_candidate(self, candidate: CandidateRecord, was: CandidateStatus | None = None) -> None:
        await anyio.to_thread.run_sync(self.store.save_candidate, candidate, was)

    async def finish(self, cycle_id: str, status: CycleStatus, at: float, error: str | None = None) -> None:
        await anyio.to_thread.run_sync(self.store.finish, cycle_id, status, at, error)

    async def set_left_out(self, cycle_id: str, entries: list[LeftOutEntry], total: int) -> None:
        await anyio.to_thread.run_sync(self.store.set_left_out, cycle_id, entries, total)

    async def get(self, cycle_id: str) -> CycleRecord | None:
        return await anyio.to_thread.run_sync(self.store.get, cycle_id)

    async def by_status(self, status: CandidateStatus) -> list[CandidateRecord]:
        return await anyio.to_thread.run_sync(self.store.by_status, status)

    async def by_deployment(self, deployment_id: str) -> CandidateRecord | None:
        return await anyio.to_thread.run_sync(self.store.by_deployment, deployment_id)

    async def orphans(self, alive: Collection[str]) -> list[CycleRecord]:
        return await anyio.to_thread.run_sync(self.store.orphans, alive)

    async def adopt(self, cycle_id: str, alive: Collection[str]) -> bool:
        return await anyio.to_thread.run_sync(self.store.adopt, cycle_id, alive)

    async def interrupt(self, cycle_id: str, at: float) -> bool:
        return await anyio.to_thread.run_sync(self.store.interrupt, cycle_id, at)


class SqliteCycleStore:
    """Cycles in one SQLite file; one connection behind a lock (thread-safe)."""

    def __init__(self, path: Path, *, owner: str | None = None) -> None:
        """``owner``: this server (by default a name of its own: every start is a new owner)."""
        self._db = Database(path, _SCHEMA)
        self._conn, self._lock = self._db.conn, self._db.lock
        self.owner = owner or uuid.uuid4().hex
        with self._db.transaction() as conn:  # a file from before owners: its cycles have none (orphans)
            if "owner" not in {row[1] for row in conn.execute("PRAGMA table_info(cycles)")}:
                conn.execute("ALTER TABLE cycles ADD COLUMN owner TEXT")

    def close(self) -> None:
        """Close the connection."""
        self._db.close()

    def create(self, cycle: CycleRecord) -> None:
        c = cycle
        with self._db.transaction() as conn:
            conn.execute(
                "INSERT INTO cycles (id, tenant, actor, trigger, status, started_at, updated_at, finished_at, params,"
                " error, owner) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    c.id,
                    c.tenant,
                    c.actor,
                    c.trigger,
                    c.status,
                    c.started_at,
                    c.updated_at,
                    c.finished_at,
                    json.dumps(c.params),
                    c.error,
                    self.owner,
                ),
            )

    def save_candidate(self, candidate: CandidateRecord, was: CandidateStatus | None = None) -> None:
        """Write the candidate. With ``was``, only if the stored one still has that status (compare and set): a step
        that holds a stale copy (another step decided it meanwhile) gets :class:`IllegalTransitionError`, and the
        stored candidate stays as it is. Without (a new candidate), never for a cycle another server interrupted
        (:class:`CycleTakenOverError`): the fence against a server that lost its lease but runs on."""
        c = candidate
        with self._db.transaction() as conn:
            if was is None:  # a new candidate: not once another server interrupted its cycle (took it over)
                cycle = conn.execute("SELECT status FROM cycles WHERE id = ?", (c.cycle_id,)).fetchone()
                if cycle is not None and cycle[0] == "interrupted":
                    raise CycleTakenOverError(c.cycle_id, cycle[0])
            if was is not None:
                row = conn.execute(
                    "SELECT status FROM candidates WHERE cycle_id = ? AND position = ?", (c.cycle_id, c.position)
                ).fetchone()
                if row is not None and row[0] != was:
                    raise IllegalTransitionError(
                        f"candidate {c.position} of cycle {c.cycle_id} ({c.component}) is {row[0]}, not {was}: "
                        f"another step moved it, so it does not go to {c.status}"
                    )
            conn.execute(
                "INSERT OR REPLACE INTO candidates (cycle_id, position, component, metric, status, updated_at,"
                " deployment_id, monitor_until, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    c.cycle_id,
                    c.position,
                    c.component,
                    c.metric,
                    c.status,
                    c.updated_at,
                    c.deployment_id,
                    c.monitor_until,
                    json.dumps(c.detail, default=str),
                ),
            )
            conn.execute("UPDATE cycles SET updated_at = MAX(updated_at, ?) WHERE id = ?", (c.updated_at, c.cycle_id))

    def finish(self, cycle_id: str, status: CycleStatus, at: float, error: str | None = None) -> None:
        """Record how the cycle ended; again later when its status is derived anew (it keeps its first end time). Never
        over ``interrupted``: another server took the cycle over (the fence against a runner that lost its lease)."""
        with self._db.transaction() as conn:
            conn.execute(
                "UPDATE cycles SET status = ?, updated_at = ?, finished_at = COALESCE(finished_at, ?), error = ?"
                " WHERE id = ? AND status <> 'interrupted'",  # another server took it over: its record stands
                (status, at, at, error, cycle_id),
            )

    def set_left_out(self, cycle_id: str, entries: list[LeftOutEntry], total: int) -> None:
        """The opportunities the cycle did not act on (at most the first MAX_LEFT_OUT are passed) and how many."""
        with self._db.transaction() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO left_out (cycle_id, total, entries) VALUES (?, ?, ?)",
                (cycle_id, total, json.dumps(entries, default=str)),
            )

    def get(self, cycle_id: str) -> CycleRecord | None:
        with self._lock:
            row = self._conn.execute(
                f"SELECT {CYCLE_COLUMNS} FROM {CYCLES_JOINED} WHERE id = ?", (cycle_id,)
            ).fetchone()
            if row is None:
                return None
            cycle = cycle_from_row(row)
            rows = self._conn.execute(
                f"SELECT {CANDIDATE_COLUMNS} FROM candidates WHERE cycle_id = ? ORDER BY position", (cycle_id,)
            ).fetchall()
        cycle.candidates = [candidate_from_row(r) for r in rows]
        return cycle

    def by_status(self, status: CandidateStatus) -> list[CandidateRecord]:
        with self._lock:
            rows = self._conn.execute(
                f"SELECT {CANDIDATE_COLUMNS} FROM candidates WHERE status = ?", (status,)
            ).fetchall()
        return [candidate_from_row(r) for r in rows]

    def by_deployment(self, deployment_id: str) -> CandidateRecord | None:
        with self._lock:
            row = self._conn.execute(
                f"SELECT {CANDIDATE_COLUMNS} FROM candidates WHERE deployment_id = ?", (deployment_id,)
            ).fetchone()
        return None if row is None else candidate_from_row(row)

    def active(self, limit: int) -> tuple[list[CycleRecord], bool]:
        """Cycles still at work, newest first: running, or with a change held for approval, being deployed or
        monitored. At most ``limit``, and whether there were more."""
        busy = "', '".join(ACTIVE_CANDIDATE_STATUSES)
        with self._lock:  # two queries however many cycles: this is read after every change a listener hears of
            rows = self._conn.execute(
                f"SELECT {CYCLE_COLUMNS} FROM {CYCLES_JOINED} WHERE status = 'running' OR id IN"
                f" (SELECT cycle_id FROM candidates WHERE status IN ('{busy}')) ORDER BY started_at DESC LIMIT ?",
                (limit + 1,),
            ).fetchall()
            cycles = [cycle_from_row(r) for r in rows[:limit]]
            marks = ", ".join("?" * len(cycles))
            candidates = self._conn.execute(
                f"SELECT {CANDIDATE_COLUMNS} FROM candidates WHERE cycle_id IN ({marks}) ORDER BY cycle_id, position",
                [c.id for c in cycles],
            ).fetchall()
        by_cycle = {c.id: c for c in cycles}
        for row in candidates:
            candidate = candidate_from_row(row)
            by_cycle[candidate.cycle_id].candidates.append(candidate)
        return cycles, len(rows) > limit

    def tallies(self) -> dict[str, dict[str, int]]:
        """How many cycles and candidates there are in each status (all time): ``{"cycles": .., "candidates": ..}``."""
        with self._lock:
            cycles = self._conn.execute("SELECT status, COUNT(*) FROM cycles GROUP BY status").fetchall()
            candidates = self._conn.execute("SELECT status, COUNT(*) FROM candidates GROUP BY status").fetchall()
        return {"cycles": dict(cycles), "candidates": dict(candidates)}

    def orphans(self, alive: Collection[str]) -> list[CycleRecord]:
        """Cycles whose owner is not in ``alive`` and that still want one: running, or with a change being deployed or
        watched. With their candidates."""
        marks = ", ".join("?" * len(alive))
        with self._lock:
            ids = [r[0] for r in self._conn.execute(
                f"SELECT id FROM cycles WHERE (owner IS NULL OR owner NOT IN ({marks})) AND (status = 'running' OR"
                f" id IN (SELECT cycle_id FROM candidates WHERE status IN {ORPHANED_CANDIDATES})) ORDER BY started_at",
                list(alive),
            )]  # fmt: skip
        return [c for c in map(self.get, ids) if c is not None]

    def adopt(self, cycle_id: str, alive: Collection[str]) -> bool:
        """Make this store's owner the cycle's, if its owner is still not in ``alive`` (compare and set)."""
        marks = ", ".join("?" * len(alive))
        with self._db.transaction() as conn:
            cursor = conn.execute(
                f"UPDATE cycles SET owner = ? WHERE id = ? AND (owner IS NULL OR owner NOT IN ({marks}))",
                [self.owner, cycle_id, *alive],
            )
        return cursor.rowcount == 1

    def interrupt(self, cycle_id: str, at: float) -> bool:
        """A running cycle whose server stopped becomes ``interrupted``, and so do its candidates that were queued or
        generating; those deploying or watched are left to the caller (their deployment decides)."""
        with self._db.transaction() as conn:
            cursor = conn.execute(
                "UPDATE cycles SET status = 'interrupted', updated_at = ?, finished_at = ?,"
                " error = 'the server stopped while this cycle ran' WHERE id = ? AND status = 'running'",
                (at, at, cycle_id),
            )
            conn.execute(
                "UPDATE candidates SET status = 'interrupted', updated_at = ?"
                " WHERE cycle_id = ? AND status IN ('queued', 'generating')",
                (at, cycle_id),
            )
        return cursor.rowcount == 1


ACTIVE_CANDIDATE_STATUSES: tuple[CandidateStatus, ...] = ("generating", "pending_approval", "deploying", "monitoring")
ORPHANED_CANDIDATES = "('deploying', 'monitoring', 'pending_approval')"  # what an orphan's new owner sees through
CYCLE_COLUMNS = "id, tenant, actor, trigger, status, started_at, updated_at, finished_at, params, error, total, entries"
CYCLES_JOINED = "cycles LEFT JOIN left_out ON left_out.cycle_id = cycles.id"
CANDIDATE_COLUMNS = "cycle_id, position, component, metric, status, updated_at, deployment_id, monitor_until, detail"


def cycle_from_row(row: tuple[Any, ...]) -> CycleRecord:
    return CycleRecord(
        id=row[0],
        tenant=row[1],
        actor=row[2],
        trigger=row[3],
        status=row[4],
        started_at=row[5],
        updated_at=row[6],
        finished_at=row[7],
        params=json.loads(row[8]),
        error=row[9],
        left_out=json.loads(row[11]) if row[11] else [],
        left_out_total=row[10] or 0,
    )


def candidate_from_row(row: tuple[Any, ...]) -> CandidateRecord:
    return CandidateRecord(
        cycle_id=row[0],
        position=row[1],
        component=row[2],
        metric=row[3],
        status=row[4],
        updated_at=row[5],
        deployment_id=row[6],
        monitor_until=row[7],
        detail=json.loads(row[8]),
    )
