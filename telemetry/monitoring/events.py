"""Monitoring events and their store: SQLite in WAL mode behind the :class:`EventStore` Protocol."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar

import anyio.to_thread
from pydantic import BaseModel, Field

from telemetry.monitoring.thresholds import EventType, Severity
from telemetry.store.sqlite_db import WalDatabase

T = TypeVar("T")
MAX_QUERY_LIMIT = 500


class MonitoringEvent(BaseModel):
    id: int = Field(description="Event id (increasing).")
    event_type: EventType = Field(description="What kind of condition was seen.")
    severity: Severity = Field(description="How serious the condition is: low, medium, high or critical.")
    resource: str = Field(description="What the condition is about: cpu, memory, a mount point, gpuN.")
    message: str = Field(description="One line for a human.")
    value: float = Field(description="The latest value of the figure.")
    threshold: float = Field(description="The limit the figure crossed.")
    peak: float = Field(description="The worst value seen while the condition held.")
    first_seen: float = Field(description="Unix time the event was raised.")
    last_seen: float = Field(description="Unix time the condition was last seen.")
    occurrences: int = Field(description="Samples (or spikes) folded into this event.")
    active: bool = Field(description="True while the condition still holds.")
    resolved_at: float | None = Field(None, description="Unix time the condition cleared, if it has.")


class NewEvent(BaseModel):
    event_type: EventType
    severity: Severity
    resource: str
    message: str
    value: float
    threshold: float
    timestamp: float
    active: bool = True


class EventPage(BaseModel):
    events: list[MonitoringEvent] = Field(description="Events, newest first.")
    total: int = Field(description="How many events match the filters in all.")
    has_more: bool = Field(description="True when more matching events exist beyond this page.")


class EventStore(Protocol):
    """Persistence for monitoring events; SQLite by default, a server database later."""

    async def add(self, event: NewEvent) -> MonitoringEvent: ...
    async def touch(
        self, event_id: int, *, value: float, peak: float, severity: Severity, message: str, at: float
    ) -> MonitoringEvent | None: ...
    async def resolve(self, event_id: int, at: float) -> MonitoringEvent | None: ...
    async def query(
        self,
        *,
        event_type: str | None = None,
        severity: str | None = None,
        since: float | None = None,
        active: bool | None = None,
        limit: int = 50,
    ) -> EventPage: ...
    async def clear(self) -> int: ...
    async def prune(self, max_count: int, max_age_seconds: float, now: float) -> int: ...
    async def get_setting(self, key: str) -> str | None: ...
    async def put_setting(self, key: str, value: str) -> None: ...
    def close(self) -> None: ...


_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    event_type TEXT NOT NULL,
    severity TEXT NOT NULL,
    resource TEXT NOT NULL,
    message TEXT NOT NULL,
    value REAL NOT NULL,
    threshold REAL NOT NULL,
    peak REAL NOT NULL,
    first_seen REAL NOT NULL,
    last_seen REAL NOT NULL,
    occurrences INTEGER NOT NULL DEFAULT 1,
    active INTEGER NOT NULL,
    resolved_at REAL
);
CREATE INDEX IF NOT EXISTS events_by_time ON events (last_seen DESC, id DESC);
CREATE INDEX IF NOT EXISTS events_by_type ON events (event_type, last_seen DESC);
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
_COLUMNS = (
    "id, event_type, severity, resource, message, value, threshold, peak, first_seen, last_seen, "
    "occurrences, active, resolved_at"
)


class SqliteEventStore:
    """Events in one SQLite file (WAL, synchronous=NORMAL). Every call runs in a worker thread."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db = WalDatabase(path, _SCHEMA, timeout=10)
        self._conn, self._lock = self._db.conn, self._db.lock
        self._conn.row_factory = sqlite3.Row

    @property
    def journal_mode(self) -> str:
        with self._lock:
            return str(self._conn.execute("PRAGMA journal_mode").fetchone()[0])

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        def locked() -> T:
            with self._lock:
                return fn(*args)

        return await anyio.to_thread.run_sync(locked)

    async def _write(self, fn: Callable[..., T], *args: Any) -> T:
        """As :meth:`_run`, for a write: a full disk raises ``StorageFullError`` (see ``WalDatabase.writing``)."""

        def locked() -> T:
            with self._lock, self._db.writing():
                return fn(*args)

        return await anyio.to_thread.run_sync(locked)

    def _get(self, event_id: int) -> MonitoringEvent | None:
        row = self._conn.execute(f"SELECT {_COLUMNS} FROM events WHERE id = ?", (event_id,)).fetchone()
        return _to_event(row) if row else None

    async def add(self, event: NewEvent) -> MonitoringEvent:
        def insert() -> MonitoringEvent:
            cur = self._conn.execute(
                "INSERT INTO events (event_type, severity, resource, message, value, threshold, peak, first_seen,"
                " last_seen, occurrences, active, resolved_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?)",
                (
                    event.event_type,
                    event.severity,
                    event.resource,
                    event.message,
                    event.value,
                    event.threshold,
                    event.value,
                    event.timestamp,
                    event.timestamp,
                    int(event.active),
                    None if event.active else event.timestamp,
                ),
            )
            created = self._get(int(cur.lastrowid or 0))
            assert created is not None
            return created

        return await self._write(insert)

    async def touch(
        self, event_id: int, *, value: float, peak: float, severity: Severity, message: str, at: float
    ) -> MonitoringEvent | None:
        def update() -> MonitoringEvent | None:
            self._conn.execute(
                "UPDATE events SET value = ?, peak = MAX(peak, ?), severity = ?, message = ?, last_seen = ?,"
                " occurrences = occurrences + 1 WHERE id = ?",
                (value, peak, severity, message, at, event_id),
            )
            return self._get(event_id)

        return await self._write(update)

    async def resolve(self, event_id: int, at: float) -> MonitoringEvent | None:
        def update() -> MonitoringEvent | None:
            self._conn.execute(
                "UPDATE events SET active = 0, resolved_at = ?, last_seen = MAX(last_seen, ?) WHERE id = ? AND active",
                (at, at, event_id),
            )
            return self._get(event_id)

        return await self._write(update)

    async def query(
        self,
        *,
        event_type: str | None = None,
        severity: str | None = None,
        since: float | None = None,
        active: bool | None = None,
        limit: int = 50,
    ) -> EventPage:
        clauses: list[str] = []
        params: list[Any] = []
        for column, value in (("event_type", event_type), ("severity", severity)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        if since is not None:
            clauses.append("last_seen >= ?")
            params.append(since)
        if active is not None:
            clauses.append("active = ?")
            params.append(int(active))
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        limit = max(0, min(limit, MAX_QUERY_LIMIT))

        def select() -> EventPage:
            total = int(self._conn.execute(f"SELECT COUNT(*) FROM events {where}", params).fetchone()[0])
            rows = self._conn.execute(
                f"SELECT {_COLUMNS} FROM events {where} ORDER BY last_seen DESC, id DESC LIMIT ?", [*params, limit]
            ).fetchall()
            return EventPage(events=[_to_event(r) for r in rows], total=total, has_more=total > len(rows))

        return await self._run(select)

    async def clear(self) -> int:
        return await self._write(lambda: int(self._conn.execute("DELETE FROM events").rowcount))

    async def prune(self, max_count: int, max_age_seconds: float, now: float) -> int:
        def delete() -> int:
            with self._db.transaction() as conn:
                aged = conn.execute(
                    "DELETE FROM events WHERE NOT active AND last_seen < ?", (now - max_age_seconds,)
                ).rowcount
                over = conn.execute(
                    "DELETE FROM events WHERE id IN (SELECT id FROM events ORDER BY last_seen DESC, id DESC"
                    " LIMIT -1 OFFSET ?)",
                    (max_count,),
                ).rowcount
            return int(aged) + int(over)

        return await anyio.to_thread.run_sync(delete)

    async def get_setting(self, key: str) -> str | None:
        def get() -> str | None:
            row = self._conn.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
            return str(row[0]) if row else None

        return await self._run(get)

    async def put_setting(self, key: str, value: str) -> None:
        await self._write(
            lambda: self._conn.execute(
                "INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, value),
            )
        )

    def close(self) -> None:
        self._db.close()


def _to_event(row: sqlite3.Row) -> MonitoringEvent:
    data = dict(row)
    data["active"] = bool(data["active"])
    return MonitoringEvent.model_validate(data)
