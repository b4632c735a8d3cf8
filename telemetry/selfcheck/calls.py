"""The server's own tool calls: one record per call, buffered in memory and written to SQLite (WAL) in batches.

The hot path (:meth:`CallRecorder.record`, once per tool call) only appends to a list under a lock. A background
task (:meth:`CallRecorder.run`) writes the buffer once a second from a worker thread, and :meth:`CallRecorder.close`
writes what is left at shutdown, so a normal shutdown loses nothing; a crash of the process loses at most the last
second of calls. Readers flush first, so a query sees every call that has returned.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal, Protocol

import anyio
import anyio.to_thread

from telemetry.errors import StorageFullError
from telemetry.store.sqlite_db import WalDatabase, insert_rows

logger = logging.getLogger(__name__)

Outcome = Literal["ok", "error"]
# access_denied: the caller lacks a role or tenant; invalid_arguments: arguments failed validation; unknown_tool: no
# such tool; the tool refused the request because the thing is not there (not_found), not allowed (refused), not now
# (conflict), not as given (invalid) or a dependency cannot serve it (unavailable); tool_error: a refusal that says
# no kind; internal: the tool crashed; cancelled: the caller gave up before the result; protocol_error: the request
# was rejected as a JSON-RPC error.
ERROR_KINDS: Final = ("access_denied", "invalid_arguments", "unknown_tool", "not_found", "refused", "conflict",
                      "invalid", "unavailable", "tool_error", "internal", "cancelled", "protocol_error")  # fmt: skip
MAX_NAME = 100  # tool, tenant and caller names are caller-supplied: cut to this length
MAX_BUFFERED = 100_000  # records kept while the store cannot be written; beyond it the oldest are dropped


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One tool call: when it started (Unix time), what was called for which tenant by whom, how long it took
    (seconds) and how it ended."""

    ts: float
    tool: str
    tenant: str
    caller: str
    duration: float
    outcome: Outcome
    error_kind: str | None = None


class CallStore(Protocol):
    """Where recorded calls live. Blocking: callers use worker threads."""

    def add(self, calls: Sequence[ToolCall]) -> None: ...

    def calls(
        self, *, start: float, end: float, tenants: Collection[str] | None = None, limit: int = 200_000
    ) -> tuple[list[ToolCall], int]:
        """The newest ``limit`` calls in ``[start, end]`` (of ``tenants`` only, when given), oldest first, and how
        many the window holds in all."""
        ...

    def prune(self, older_than: float) -> int: ...

    def close(self) -> None: ...


_SCHEMA = """
CREATE TABLE IF NOT EXISTS calls (
    id INTEGER PRIMARY KEY,
    ts REAL NOT NULL,
    tool TEXT NOT NULL,
    tenant TEXT NOT NULL,
    caller TEXT NOT NULL,
    duration REAL NOT NULL,
    outcome TEXT NOT NULL,
    error_kind TEXT
);
CREATE INDEX IF NOT EXISTS calls_by_time ON calls (ts);
CREATE INDEX IF NOT EXISTS calls_by_tenant_time ON calls (tenant, ts);
"""
_COLUMNS = "ts, tool, tenant, caller, duration, outcome, error_kind"


class SqliteCallStore:
    """Recorded calls in one SQLite file. Thread-safe: one connection behind a lock."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db = WalDatabase(path, _SCHEMA)
        self._conn, self._lock = self._db.conn, self._db.lock

    def add(self, calls: Sequence[ToolCall]) -> None:
        if not calls:
            return
        rows = [(c.ts, c.tool, c.tenant, c.caller, c.duration, c.outcome, c.error_kind) for c in calls]
        with self._db.transaction() as conn:
            insert_rows(conn, f"INSERT INTO calls ({_COLUMNS})", rows)

    def calls(
        self, *, start: float, end: float, tenants: Collection[str] | None = None, limit: int = 200_000
    ) -> tuple[list[ToolCall], int]:
        where = "ts >= ? AND ts <= ?"
        params: list[object] = [start, end]
        if tenants is not None:
            where += f" AND tenant IN ({', '.join('?' * len(tenants))})" if tenants else " AND 0"
            params += list(tenants)
        with self._lock:
            (total,) = self._conn.execute(f"SELECT COUNT(*) FROM calls WHERE {where}", params).fetchone()
            rows = self._conn.execute(
                f"SELECT {_COLUMNS} FROM calls WHERE {where} ORDER BY ts DESC, id DESC LIMIT ?", [*params, limit]
            ).fetchall()
        rows.reverse()
        return [ToolCall(*row) for row in rows], int(total)

    def prune(self, older_than: float) -> int:
        with self._db.transaction() as conn:
            return conn.execute("DELETE FROM calls WHERE ts < ?", (older_than,)).rowcount

    def close(self) -> None:
        self._db.close()


class CallRecorder:
    """Buffers calls in memory and writes them to ``store`` in batches (see the module docstring)."""

    def __init__(
        self,
        store: CallStore,
        *,
        retention_seconds: float,
        clock: Callable[[], float] = time.time,
        max_buffered: int = MAX_BUFFERED,
    ) -> None:
        self.store = store
        self.retention_seconds = retention_seconds
        self.clock = clock
        self.dropped = 0
        self._max_buffered = max_buffered
        self._buffer: deque[ToolCall] = deque()
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()  # keeps batches in order when a reader flushes during the loop's flush

    def record(self, call: ToolCall) -> None:
        """Keep one call for the next batch (cheap: called on every tool call)."""
        with self._lock:
            self._buffer.append(call)
            if len(self._buffer) > self._max_buffered:
                self._buffer.popleft()  # the oldest goes: O(1) however long the store has been failing
                self.dropped += 1

    def flush(self) -> int:
        """Write the buffered calls (blocking); on failure they stay buffered for the next try and it raises."""
        with self._write_lock:
            with self._lock:
                batch, self._buffer = list(self._buffer), deque()
            try:
                self.store.add(batch)
            except BaseException:
                with self._lock:  # back in front of what came since, within the bound (the oldest are dropped)
                    kept = [*batch, *self._buffer]
                    self.dropped += max(0, len(kept) - self._max_buffered)
                    self._buffer = deque(kept[-self._max_buffered :])
                raise
            return len(batch)

    def calls(
        self, *, start: float, end: float, tenants: Collection[str] | None = None, limit: int = 200_000
    ) -> tuple[list[ToolCall], int]:
        """Every call that has returned (buffered ones included), as :meth:`CallStore.calls`. Blocking.

        While the data directory is full the buffered calls cannot be written; they are read from memory instead,
        so a reader still sees every call."""
        try:
            self.flush()
        except StorageFullError:
            return self._with_buffered(start=start, end=end, tenants=tenants, limit=limit)
        return self.store.calls(start=start, end=end, tenants=tenants, limit=limit)

    def _with_buffered(
        self, *, start: float, end: float, tenants: Collection[str] | None, limit: int
    ) -> tuple[list[ToolCall], int]:
        with self._write_lock:  # no batch in flight: each call is either still buffered or already stored
            with self._lock:
                buffered = [
                    c for c in self._buffer if start <= c.ts <= end and (tenants is None or c.tenant in tenants)
                ]
            stored, total = self.store.calls(start=start, end=end, tenants=tenants, limit=limit)
        merged = sorted([*stored, *buffered], key=lambda c: c.ts)
        return merged[-limit:] if limit > 0 else [], total + len(buffered)

    def prune(self) -> int:
        """Delete calls older than the retention (blocking)."""
        return self.store.prune(older_than=self.clock() - self.retention_seconds)

    async def run(self, *, interval: float = 1.0, prune_every: float = 3600.0) -> None:
        """Write the buffer every ``interval`` seconds and prune every ``prune_every`` (from the start) until
        cancelled; failures are logged and retried."""
        next_prune = 0.0
        while True:
            try:
                if time.monotonic() >= next_prune:
                    next_prune = time.monotonic() + prune_every
                    removed = await anyio.to_thread.run_sync(self.prune)
                    if removed:
                        logger.info("pruned %d recorded tool calls older than %.1f days", removed,
                                    self.retention_seconds / 86400)  # fmt: skip
                await anyio.to_thread.run_sync(self.flush)
            except StorageFullError:
                pass  # the store logs the episode once; the calls stay buffered (bounded) and are retried
            except Exception:
                logger.exception("writing the recorded tool calls failed (kept in memory, retried)")
            await anyio.sleep(interval)

    def close(self) -> None:
        """Write what is still buffered, then close the store (blocking)."""
        try:
            self.flush()
        except StorageFullError as exc:
            logger.warning("the last %d recorded tool calls could not be written: %s", len(self._buffer), exc)
        except Exception:
            logger.exception("the last %d recorded tool calls could not be written", len(self._buffer))
        finally:
            self.store.close()
