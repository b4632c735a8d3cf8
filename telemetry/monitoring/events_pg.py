"""Monitoring events in PostgreSQL, for several replicas on one database (each monitors its own host, and every
replica shows the timeline): the same behaviour as :class:`telemetry.monitoring.events.SqliteEventStore`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import anyio.to_thread
from psycopg import Connection
from psycopg.rows import DictRow, dict_row, tuple_row

from telemetry.monitoring.events import MAX_QUERY_LIMIT, EventPage, MonitoringEvent, NewEvent
from telemetry.monitoring.thresholds import Severity
from telemetry.store.pg_db import PostgresDatabase

T = TypeVar("T")
STORE = "monitoring_events"
MIGRATIONS: tuple[tuple[int, str], ...] = (
    (
        1,
        """
        CREATE TABLE monitoring_events (
            id BIGSERIAL PRIMARY KEY,
            event_type TEXT NOT NULL,
            severity TEXT NOT NULL,
            resource TEXT NOT NULL,
            message TEXT NOT NULL,
            value DOUBLE PRECISION NOT NULL,
            threshold DOUBLE PRECISION NOT NULL,
            peak DOUBLE PRECISION NOT NULL,
            first_seen DOUBLE PRECISION NOT NULL,
            last_seen DOUBLE PRECISION NOT NULL,
            occurrences INTEGER NOT NULL DEFAULT 1,
            active BOOLEAN NOT NULL,
            resolved_at DOUBLE PRECISION
        );
        CREATE INDEX monitoring_events_by_time ON monitoring_events (last_seen DESC, id DESC);
        CREATE INDEX monitoring_events_by_type ON monitoring_events (event_type, last_seen DESC);
        CREATE TABLE monitoring_settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        """,
    ),
)
_COLUMNS = (
    "id, event_type, severity, resource, message, value, threshold, peak, first_seen, last_seen, "
    "occurrences, active, resolved_at"
)


class PostgresEventStore:
    """:class:`telemetry.monitoring.events.EventStore` in PostgreSQL. Every call runs in a worker thread."""

    def __init__(self, db: PostgresDatabase) -> None:
        self._db = db
        db.migrate(STORE, MIGRATIONS)

    async def _run(self, fn: Callable[[Connection[DictRow]], T]) -> T:
        def transaction() -> T:
            with self._db.pool.connection() as conn, conn.transaction():
                conn.row_factory = dict_row  # type: ignore[assignment]
                try:
                    return fn(conn)  # type: ignore[arg-type]
                finally:  # the connection goes back to the pool the other stores share: as it came
                    conn.row_factory = tuple_row

        return await anyio.to_thread.run_sync(transaction)

    @staticmethod
    def _get(conn: Connection[DictRow], event_id: int) -> MonitoringEvent | None:
        row = conn.execute(f"SELECT {_COLUMNS} FROM monitoring_events WHERE id = %s", (event_id,)).fetchone()
        return MonitoringEvent.model_validate(row) if row else None

    async def add(self, event: NewEvent) -> MonitoringEvent:
        def insert(conn: Connection[DictRow]) -> MonitoringEvent:
            row = conn.execute(
                "INSERT INTO monitoring_events (event_type, severity, resource, message, value, threshold, peak,"
                " first_seen, last_seen, occurrences, active, resolved_at)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, 1, %s, %s) RETURNING id",
                (event.event_type, event.severity, event.resource, event.message, event.value, event.threshold,
                 event.value, event.timestamp, event.timestamp, event.active,
                 None if event.active else event.timestamp),
            ).fetchone()  # fmt: skip
            assert row is not None
            created = self._get(conn, int(row["id"]))
            assert created is not None
            return created

        return await self._run(insert)

    async def touch(
        self, event_id: int, *, value: float, peak: float, severity: Severity, message: str, at: float
    ) -> MonitoringEvent | None:
        def update(conn: Connection[DictRow]) -> MonitoringEvent | None:
            conn.execute(
                "UPDATE monitoring_events SET value = %s, peak = GREATEST(peak, %s), severity = %s, message = %s,"
                " last_seen = %s, occurrences = occurrences + 1 WHERE id = %s",
                (value, peak, severity, message, at, event_id),
            )
            return self._get(conn, event_id)

        return await self._run(update)

    async def resolve(self, event_id: int, at: float) -> MonitoringEvent | None:
        def update(conn: Connection[DictRow]) -> MonitoringEvent | None:
            conn.execute(
                "UPDATE monitoring_events SET active = FALSE, resolved_at = %s, last_seen = GREATEST(last_seen, %s)"
                " WHERE id = %s AND active",
                (at, at, event_id),
            )
            return self._get(conn, event_id)

        return await self._run(update)

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
        for column, op, value in (
            ("event_type", "=", event_type), ("severity", "=", severity), ("last_seen", ">=", since),
            ("active", "=", active),
        ):  # fmt: skip
            if value is not None:
                clauses.append(f"{column} {op} %s")
                params.append(value)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        limit = max(0, min(limit, MAX_QUERY_LIMIT))

        def select(conn: Connection[DictRow]) -> EventPage:
            counted = conn.execute(f"SELECT COUNT(*) AS n FROM monitoring_events {where}", params).fetchone()
            total = int(counted["n"]) if counted else 0
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM monitoring_events {where} ORDER BY last_seen DESC, id DESC LIMIT %s",
                [*params, limit],
            ).fetchall()
            events = [MonitoringEvent.model_validate(r) for r in rows]
            return EventPage(events=events, total=total, has_more=total > len(rows))

        return await self._run(select)

    async def clear(self) -> int:
        return await self._run(lambda conn: int(conn.execute("DELETE FROM monitoring_events").rowcount))

    async def prune(self, max_count: int, max_age_seconds: float, now: float) -> int:
        def delete(conn: Connection[DictRow]) -> int:
            aged = conn.execute(
                "DELETE FROM monitoring_events WHERE NOT active AND last_seen < %s", (now - max_age_seconds,)
            ).rowcount
            over = conn.execute(
                "DELETE FROM monitoring_events WHERE id IN (SELECT id FROM monitoring_events"
                " ORDER BY last_seen DESC, id DESC OFFSET %s)",
                (max_count,),
            ).rowcount
            return int(aged) + int(over)

        return await self._run(delete)

    async def get_setting(self, key: str) -> str | None:
        def get(conn: Connection[DictRow]) -> str | None:
            row = conn.execute("SELECT value FROM monitoring_settings WHERE key = %s", (key,)).fetchone()
            return str(row["value"]) if row else None

        return await self._run(get)

    async def put_setting(self, key: str, value: str) -> None:
        def put(conn: Connection[DictRow]) -> None:
            conn.execute(
                "INSERT INTO monitoring_settings (key, value) VALUES (%s, %s)"
                " ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                (key, value),
            )

        await self._run(put)

    def close(self) -> None:
        """Nothing of its own to close: the database (shared by the stores) is closed by its owner."""
