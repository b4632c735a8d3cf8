"""Telemetry in PostgreSQL, for several replicas on one database: the same behaviour as
:class:`telemetry.store.sqlite_store.SqliteTelemetryStore` (the same aggregates, computed in the database). WAL's
readers-never-wait comes with PostgreSQL's MVCC: every read is a snapshot, on a connection of the pool."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from psycopg import Connection
from psycopg.rows import TupleRow

from telemetry.store import rollups
from telemetry.store.pg_db import PostgresDatabase
from telemetry.store.records import (
    Dimensions,
    EventRecord,
    LogRecord,
    MetricPoint,
    Moments,
    Series,
    SeriesKey,
    SeriesStats,
    StoreCounts,
)
from telemetry.store.stats_cache import Queries, StatsCache

STORE = "telemetry"
MIGRATIONS: tuple[tuple[int, str], ...] = (
    (
        1,
        """
        CREATE TABLE series (
            id BIGSERIAL PRIMARY KEY,
            tenant TEXT NOT NULL,
            name TEXT NOT NULL,
            dims TEXT NOT NULL,
            unit TEXT,
            source TEXT NOT NULL,
            UNIQUE (tenant, name, dims)
        );
        CREATE TABLE points (
            series_id BIGINT NOT NULL,
            ts DOUBLE PRECISION NOT NULL,
            value DOUBLE PRECISION NOT NULL,
            PRIMARY KEY (series_id, ts) INCLUDE (value)
        );
        CREATE INDEX points_by_time ON points (ts);
        CREATE TABLE logs (
            id BIGSERIAL PRIMARY KEY,
            tenant TEXT NOT NULL,
            ts DOUBLE PRECISION NOT NULL,
            level TEXT NOT NULL,
            message TEXT NOT NULL,
            component TEXT,
            attributes TEXT NOT NULL,
            source TEXT NOT NULL
        );
        CREATE INDEX logs_by_tenant_time ON logs (tenant, ts);
        CREATE TABLE events (
            id BIGSERIAL PRIMARY KEY,
            tenant TEXT NOT NULL,
            ts DOUBLE PRECISION NOT NULL,
            type TEXT NOT NULL,
            source TEXT NOT NULL,
            detail TEXT NOT NULL,
            dedup_key TEXT
        );
        CREATE INDEX events_by_tenant_time ON events (tenant, ts);
        CREATE UNIQUE INDEX events_dedup ON events (tenant, dedup_key) WHERE dedup_key IS NOT NULL;
        """,
    ),
    (2, rollups.schema(postgres=True)),
    (3, "ALTER TABLE series ADD COLUMN version BIGINT NOT NULL DEFAULT 0"),  # see telemetry.store.stats_cache
    (4, "DROP INDEX IF EXISTS points_by_time"),  # see _PRUNE_POINTS
)
_FIRST = "SELECT ts, value FROM points WHERE series_id = %s AND ts BETWEEN %s AND %s ORDER BY ts LIMIT 1"
_NEWEST = "SELECT ts, value FROM points WHERE series_id = %s AND ts BETWEEN %s AND %s ORDER BY ts DESC LIMIT %s"
_WINDOW = Queries(
    first=_FIRST,
    newest=_NEWEST,
    before="SELECT MAX(ts) FROM points WHERE series_id = %s AND ts < %s",
    after="SELECT MIN(ts) FROM points WHERE series_id = %s AND ts > %s",
    moments=rollups.queries(rollups.POSTGRES_BUCKET, postgres=True),
)
_ADD_POINTS = (
    "INSERT INTO points (series_id, ts, value) SELECT * FROM unnest(%s::bigint[], %s::float8[], %s::float8[])"
    " ON CONFLICT (series_id, ts) DO UPDATE SET value = EXCLUDED.value"
)
_ADD_ROLLUPS = rollups.add_unnest_sql()
_PRUNE_ROLLUPS = rollups.prune_sql(postgres=True)
_SPAN = "SELECT ts, value FROM points WHERE series_id = %s AND ts BETWEEN %s AND %s"
_RAISE_VERSIONS = "UPDATE series SET version = version + 1 WHERE id = ANY(%s)"  # the ids sorted: lock order
# A prune deletes series by series on the points' primary key (an index on the time alone halved the ingest rate for
# an hourly delete) and tells which series lost points and how many, from the rows it deleted itself: a point an
# ingest commits meanwhile is either deleted and counted, or left. It then takes the locks in an ingest's order —
# points, rollups, series rows (by id) — so the two never wait for each other in a cycle.
_PRUNE_POINTS = (
    "WITH gone AS (DELETE FROM points WHERE series_id IN (SELECT id FROM series) AND ts < %s RETURNING series_id)"
    " SELECT series_id, COUNT(*) FROM gone GROUP BY series_id ORDER BY series_id"
)


def _dims_text(dimensions: Dimensions) -> str:
    return json.dumps(dict(sorted(dimensions.items())), separators=(",", ":"))


def _fetcher(conn: Connection[TupleRow]) -> rollups.Fetch:
    def fetch(query: str, params: Mapping[str, float]) -> Moments:
        row = conn.execute(query, params).fetchone()
        assert row is not None
        count, sum_y, sum_yy, sum_x, sum_xx, sum_xy = row
        return Moments(int(count), float(sum_y), float(sum_yy), float(sum_x), float(sum_xx), float(sum_xy))

    return fetch


class PostgresTelemetryStore:
    """:class:`telemetry.store.records.TelemetryStore` in PostgreSQL. Thread-safe (a connection per call)."""

    def __init__(self, db: PostgresDatabase, *, stats_cache: StatsCache | None = None) -> None:
        """``stats_cache``: see :class:`telemetry.store.sqlite_store.SqliteTelemetryStore`."""
        self._db = db
        self._stats = StatsCache() if stats_cache is None else stats_cache
        db.migrate(STORE, MIGRATIONS)
        self._series_ids: dict[tuple[str, str, tuple[tuple[str, str], ...]], int] = {}

    def close(self) -> None:
        """Nothing of its own to close: the database (shared by the stores) is closed by its owner."""

    def _series_id(self, conn: Connection[TupleRow], point: MetricPoint) -> int:
        key = (point.tenant, point.name, tuple(point.dimensions.items()))
        found = self._series_ids.get(key)
        if found is not None:
            return found
        dims = _dims_text(point.dimensions) if point.dimensions else "{}"
        conn.execute(
            "INSERT INTO series (tenant, name, dims, unit, source) VALUES (%s, %s, %s, %s, %s)"
            " ON CONFLICT (tenant, name, dims) DO NOTHING",
            (point.tenant, point.name, dims, point.unit, point.source),
        )
        row = conn.execute(
            "SELECT id FROM series WHERE tenant = %s AND name = %s AND dims = %s", (point.tenant, point.name, dims)
        ).fetchone()
        assert row is not None
        self._series_ids[key] = int(row[0])
        return int(row[0])

    def add_metrics(self, points: Sequence[MetricPoint]) -> int:
        if not points:
            return 0
        cache_before = dict(self._series_ids)
        try:
            with self._db.transaction() as conn:
                written = {(self._series_id(conn, p), p.timestamp): p.value for p in points}  # the last one wins
                replaced = rollups.stored(written, lambda *span: conn.execute(_SPAN, span))
                # One statement each, the rows as arrays: psycopg's executemany gives up the GIL for every row, and
                # under load each row waited for it again (1,000 points: 12 ms alone, 256 ms beside a busy thread).
                # Rows in key order, so that two ingests replacing the same points lock them in the same order.
                keys = sorted(written)
                conn.execute(
                    _ADD_POINTS,
                    ([sid for sid, _ in keys], [float(ts) for _, ts in keys], [float(written[key]) for key in keys]),
                )
                changes = rollups.changes(written, replaced)
                if changes:
                    conn.execute(_ADD_ROLLUPS, rollups.add_columns(changes))
                conn.execute(_RAISE_VERSIONS, (sorted({sid for sid, _ in keys}),))
        except BaseException:
            self._series_ids = cache_before  # ids of rolled-back series must not be reused
            raise
        return len(points)

    def add_logs(self, logs: Sequence[LogRecord]) -> int:
        rows = [
            (r.tenant, r.timestamp, r.level, r.message, r.component, json.dumps(dict(r.attributes)), r.source)
            for r in logs
        ]
        with self._db.transaction() as conn, conn.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO logs (tenant, ts, level, message, component, attributes, source)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s)",
                rows,
            )
        return len(rows)

    def add_events(self, events: Sequence[EventRecord]) -> int:
        written = 0
        with self._db.transaction() as conn:
            for e in events:
                cursor = conn.execute(
                    "INSERT INTO events (tenant, ts, type, source, detail, dedup_key) VALUES (%s, %s, %s, %s, %s, %s)"
                    " ON CONFLICT DO NOTHING",
                    (e.tenant, e.timestamp, e.type, e.source, json.dumps(dict(e.detail)), e.dedup_key),
                )
                written += cursor.rowcount
        return written

    def _series_rows(
        self, conn: Connection[TupleRow], tenant: str, name: str | None, dimensions: Dimensions | None = None
    ) -> list[TupleRow]:
        query = "SELECT id, name, dims, unit, source, version FROM series WHERE tenant = %s"
        params: list[Any] = [tenant]
        if name is not None:
            query += " AND name = %s"
            params.append(name)
            if dimensions is not None:
                query += " AND dims = %s"
                params.append(_dims_text(dimensions) if dimensions else "{}")
        return conn.execute(query + ' ORDER BY name COLLATE "C", dims COLLATE "C"', params).fetchall()

    def series(
        self,
        tenant: str,
        *,
        name: str | None = None,
        start: float | None = None,
        end: float | None = None,
        dimensions: Dimensions | None = None,
    ) -> list[Series]:
        lo = float("-inf") if start is None else start
        hi = float("inf") if end is None else end
        out: list[Series] = []
        with self._db.transaction() as conn:  # one snapshot
            for series_id, series_name, dims, unit, source, _ in self._series_rows(conn, tenant, name, dimensions):
                rows = conn.execute(
                    "SELECT ts, value FROM points WHERE series_id = %s AND ts BETWEEN %s AND %s ORDER BY ts",
                    (series_id, lo, hi),
                ).fetchall()
                key = SeriesKey(tenant, series_name, tuple(sorted(json.loads(dims).items())), unit, source)
                out.append(Series(key, [r[0] for r in rows], [r[1] for r in rows]))
        return out

    def series_stats(
        self,
        tenant: str,
        *,
        name: str | None = None,
        start: float,
        end: float,
        recent_start: float | None = None,
        tail: int = 12,
        recent_share: float | None = None,
    ) -> list[SeriesStats]:
        with self._db.transaction() as conn:

            def run(sql: str, args: Sequence[Any]) -> list[Any]:
                return conn.execute(sql, args).fetchall()

            # Each statement sees what was committed before it: a version is read before the points, so a cached
            # entry never holds older points than its version says (a newer write has raised the version).
            return self._stats.series_stats(
                tenant, self._series_rows(conn, tenant, name), run, _fetcher(conn), _WINDOW, start=start, end=end,
                recent_start=recent_start, recent_share=recent_share, tail=tail,
            )  # fmt: skip

    def count_outside(self, key: SeriesKey, *, start: float, end: float, low: float, high: float) -> int:
        with self._db.pool.connection() as conn:
            row = conn.execute(
                "SELECT COUNT(*) FROM points WHERE series_id ="
                " (SELECT id FROM series WHERE tenant = %s AND name = %s AND dims = %s)"
                " AND ts BETWEEN %s AND %s AND (value < %s OR value > %s)",
                (key.tenant, key.name, _dims_text(dict(key.dimensions)), start, end, low, high),
            ).fetchone()
        return int(row[0]) if row else 0

    def logs(
        self,
        tenant: str,
        *,
        start: float | None = None,
        end: float | None = None,
        limit: int = 10_000,
        newest: bool = False,
    ) -> list[LogRecord]:
        lo = float("-inf") if start is None else start
        hi = float("inf") if end is None else end
        order = "DESC" if newest else ""
        with self._db.pool.connection() as conn:
            rows = conn.execute(
                "SELECT ts, level, message, component, attributes, source FROM logs"
                f" WHERE tenant = %s AND ts BETWEEN %s AND %s ORDER BY ts {order}, id {order} LIMIT %s",
                (tenant, lo, hi, limit),
            ).fetchall()
        if newest:
            rows.reverse()
        return [LogRecord(tenant, r[0], r[2], r[1], r[3], json.loads(r[4]), r[5]) for r in rows]

    def events(
        self,
        tenant: str,
        *,
        type: str | None = None,
        start: float | None = None,
        end: float | None = None,
        limit: int = 1_000,
    ) -> list[EventRecord]:
        lo = float("-inf") if start is None else start
        hi = float("inf") if end is None else end
        query = "SELECT ts, type, detail, source, dedup_key FROM events WHERE tenant = %s AND ts BETWEEN %s AND %s"
        params: list[Any] = [tenant, lo, hi]
        if type is not None:
            query += " AND type = %s"
            params.append(type)
        with self._db.pool.connection() as conn:
            rows = conn.execute(query + " ORDER BY ts DESC, id DESC LIMIT %s", [*params, limit]).fetchall()
        return [EventRecord(tenant, r[0], r[1], json.loads(r[2]), r[3], r[4]) for r in rows]

    def last_timestamp(self, tenant: str, name: str, dimensions: Dimensions) -> float | None:
        with self._db.pool.connection() as conn:
            row = conn.execute(
                "SELECT MAX(p.ts) FROM points p JOIN series s ON s.id = p.series_id"
                " WHERE s.tenant = %s AND s.name = %s AND s.dims = %s",
                (tenant, name, _dims_text(dimensions) if dimensions else "{}"),
            ).fetchone()
        return float(row[0]) if row and row[0] is not None else None

    def prune(self, *, older_than: float) -> int:
        hour = rollups.bucket_of(older_than)
        with self._db.transaction() as conn:
            pruned = conn.execute(_PRUNE_POINTS, (older_than,)).fetchall()
            removed = sum(int(count) for _, count in pruned)
            drop, remake = _PRUNE_ROLLUPS
            conn.execute(drop, {"b": hour})
            conn.execute(remake, {"b": hour, "hi": hour + rollups.BUCKET + rollups.SLACK})
            conn.execute(_RAISE_VERSIONS, ([int(series_id) for series_id, _ in pruned],))
            removed += conn.execute("DELETE FROM logs WHERE ts < %s", (older_than,)).rowcount
            removed += conn.execute("DELETE FROM events WHERE ts < %s", (older_than,)).rowcount
        return int(removed)

    def counts(self, tenant: str | None = None) -> StoreCounts:
        where, params = ("WHERE tenant = %s", [tenant]) if tenant is not None else ("", [])
        with self._db.transaction() as conn:
            series = conn.execute(f"SELECT COUNT(*) FROM series {where}", params).fetchone()
            points = conn.execute(
                "SELECT COUNT(*) FROM points"
                + (" WHERE series_id IN (SELECT id FROM series WHERE tenant = %s)" if tenant is not None else ""),
                params,
            ).fetchone()
            logs = conn.execute(f"SELECT COUNT(*) FROM logs {where}", params).fetchone()
            events = conn.execute(f"SELECT COUNT(*) FROM events {where}", params).fetchone()
        return StoreCounts(*(int(row[0]) if row else 0 for row in (series, points, logs, events)))
