"""SQLite (WAL) implementation of :class:`telemetry.store.records.TelemetryStore`.

Series are normalised into their own table so that a point costs one small row ``(series_id, ts, value)`` in a
``WITHOUT ROWID`` table keyed by (series, time): window queries per series are index range scans, and re-ingesting a
point (a CloudWatch window fetched twice) replaces it instead of duplicating it.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from telemetry.store import rollups
from telemetry.store.group_commit import GroupCommit
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
from telemetry.store.sqlite_db import WalDatabase, insert_rows
from telemetry.store.stats_cache import Queries, StatsCache

_SCHEMA = """
CREATE TABLE IF NOT EXISTS series (
    id INTEGER PRIMARY KEY,
    tenant TEXT NOT NULL,
    name TEXT NOT NULL,
    dims TEXT NOT NULL,
    unit TEXT,
    source TEXT NOT NULL,
    version INTEGER NOT NULL DEFAULT 0,
    UNIQUE (tenant, name, dims)
);
CREATE TABLE IF NOT EXISTS points (
    series_id INTEGER NOT NULL,
    ts REAL NOT NULL,
    value REAL NOT NULL,
    PRIMARY KEY (series_id, ts)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS logs (
    id INTEGER PRIMARY KEY,
    tenant TEXT NOT NULL,
    ts REAL NOT NULL,
    level TEXT NOT NULL,
    message TEXT NOT NULL,
    component TEXT,
    attributes TEXT NOT NULL,
    source TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS logs_by_tenant_time ON logs (tenant, ts);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    tenant TEXT NOT NULL,
    ts REAL NOT NULL,
    type TEXT NOT NULL,
    source TEXT NOT NULL,
    detail TEXT NOT NULL,
    dedup_key TEXT
);
CREATE INDEX IF NOT EXISTS events_by_tenant_time ON events (tenant, ts);
CREATE UNIQUE INDEX IF NOT EXISTS events_dedup ON events (tenant, dedup_key) WHERE dedup_key IS NOT NULL;
"""


# Aggregates per series run as index range scans on the primary key, one series at a time: a join of every point
# with its series' origins, grouped in one statement, costs more than the loop (and a temporary B-tree to group).
_FIRST = "SELECT ts, value FROM points WHERE series_id = ? AND ts BETWEEN ? AND ? ORDER BY ts LIMIT 1"
_NEWEST = "SELECT ts, value FROM points WHERE series_id = ? AND ts BETWEEN ? AND ? ORDER BY ts DESC LIMIT ?"
_WINDOW = Queries(
    first=_FIRST,
    newest=_NEWEST,
    before="SELECT MAX(ts) FROM points WHERE series_id = ? AND ts < ?",
    after="SELECT MIN(ts) FROM points WHERE series_id = ? AND ts > ?",
    moments=rollups.queries(rollups.SQLITE_BUCKET),
)
_PRUNE_ROLLUPS = rollups.prune_sql()
_SPAN = "SELECT ts, value FROM points WHERE series_id = ? AND ts BETWEEN ? AND ?"
_NEW_VERSIONS = "UPDATE series SET version = version + 1 WHERE id IN"
_IDS_PER_STATEMENT = 500
# A prune goes series by series on the points' primary key: an index on the time alone (there was one) halved the
# ingest rate for the sake of an hourly delete.
_PRUNED_VERSIONS = (
    "UPDATE series SET version = version + 1 WHERE EXISTS (SELECT 1 FROM points WHERE series_id = series.id AND ts < ?)"
)
_PRUNE_POINTS = "DELETE FROM points WHERE series_id IN (SELECT id FROM series) AND ts < ?"


def _dims_text(dimensions: Dimensions) -> str:
    return json.dumps(dict(sorted(dimensions.items())), separators=(",", ":"))


def _fetcher(conn: sqlite3.Connection) -> rollups.Fetch:
    def fetch(query: str, params: Mapping[str, float]) -> Moments:
        count, sum_y, sum_yy, sum_x, sum_xx, sum_xy = conn.execute(query, params).fetchone()
        return Moments(int(count), sum_y, sum_yy, sum_x, sum_xx, sum_xy)

    return fetch


def _statements(script: str) -> list[str]:
    """A script's statements (``executescript`` would commit the transaction they must share)."""
    out, pending = [], ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            out.append(pending)
            pending = ""
    return [s for s in out if s.strip()]


def _upgrade(conn: sqlite3.Connection) -> None:
    """Bring a store from before the rollups and the series' versions up to date, in one transaction: the rollups of
    the points already stored, a version column (see :mod:`telemetry.store.stats_cache`), no index on time alone."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        if conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'rollups'").fetchone() is None:
            for statement in _statements(rollups.schema()):
                conn.execute(statement)
        if "version" not in {row[1] for row in conn.execute("PRAGMA table_info(series)")}:
            conn.execute("ALTER TABLE series ADD COLUMN version INTEGER NOT NULL DEFAULT 0")
        conn.execute("DROP INDEX IF EXISTS points_by_time")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


class SqliteTelemetryStore:
    """Telemetry in one SQLite file. Thread-safe: one writing connection behind a lock and a few read connections
    (WAL: a read never waits for a write); callers use worker threads."""

    def __init__(self, path: Path, *, readers: int = 4, stats_cache: StatsCache | None = None) -> None:
        """``readers``: read connections (see :class:`WalDatabase`; 0: reads wait for writes and each other).
        ``stats_cache``: where the aggregates of unchanged series are kept between analyses (a new one by default;
        ``StatsCache(0)`` keeps none)."""
        self.path = path
        self._stats = StatsCache() if stats_cache is None else stats_cache
        self._db = WalDatabase(path, _SCHEMA, readers=readers)
        try:
            with self._db.lock, self._db.writing():
                _upgrade(self._db.conn)
        except BaseException:
            self._db.close()
            raise
        # (tenant, name, dimension items as given) -> series id; the DB row is keyed by the sorted dimensions.
        self._series_ids: dict[tuple[str, str, tuple[tuple[str, str], ...]], int] = {}
        # Batches pushed while another is being written share the next transaction (see GroupCommit)
        self._metric_writes = GroupCommit(self._write_metrics)

    def _series_id(self, conn: sqlite3.Connection, point: MetricPoint) -> int:
        key = (point.tenant, point.name, tuple(point.dimensions.items()))
        found = self._series_ids.get(key)
        if found is not None:
            return found
        dims = _dims_text(point.dimensions) if point.dimensions else "{}"
        conn.execute(
            "INSERT INTO series (tenant, name, dims, unit, source) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (tenant, name, dims) DO NOTHING",
            (point.tenant, point.name, dims, point.unit, point.source),
        )
        row = conn.execute(
            "SELECT id FROM series WHERE tenant = ? AND name = ? AND dims = ?", (point.tenant, point.name, dims)
        ).fetchone()
        series_id = int(row[0])
        self._series_ids[key] = series_id
        return series_id

    def add_metrics(self, points: Sequence[MetricPoint]) -> int:
        if points:
            self._metric_writes.submit(points)
        return len(points)

    def _write_metrics(self, points: Sequence[MetricPoint]) -> None:
        cache_before = dict(self._series_ids)
        try:
            with self._db.transaction() as conn:
                written = {(self._series_id(conn, p), p.timestamp): p.value for p in points}  # the last one wins
                replaced = rollups.stored(written, lambda *span: conn.execute(_SPAN, span))
                insert_rows(
                    conn,
                    "INSERT INTO points (series_id, ts, value)",
                    [(series_id, ts, value) for (series_id, ts), value in written.items()],
                    "ON CONFLICT (series_id, ts) DO UPDATE SET value = excluded.value",
                )
                insert_rows(conn, *rollups.add_rows(rollups.changes(written, replaced)))
                ids = sorted({sid for sid, _ in written})
                for start in range(0, len(ids), _IDS_PER_STATEMENT):
                    chunk = ids[start : start + _IDS_PER_STATEMENT]
                    conn.execute(f"{_NEW_VERSIONS} ({', '.join('?' * len(chunk))})", chunk)
        except BaseException:
            self._series_ids = cache_before  # ids of rolled-back series must not be reused
            raise

    def add_logs(self, logs: Sequence[LogRecord]) -> int:
        rows = [
            (r.tenant, r.timestamp, r.level, r.message, r.component, json.dumps(dict(r.attributes)), r.source)
            for r in logs
        ]
        with self._db.transaction() as conn:
            insert_rows(conn, "INSERT INTO logs (tenant, ts, level, message, component, attributes, source)", rows)
        return len(rows)

    def add_events(self, events: Sequence[EventRecord]) -> int:
        rows = [(e.tenant, e.timestamp, e.type, e.source, json.dumps(dict(e.detail)), e.dedup_key) for e in events]
        with self._db.transaction() as conn:
            return insert_rows(
                conn, "INSERT INTO events (tenant, ts, type, source, detail, dedup_key)", rows, "ON CONFLICT DO NOTHING"
            )

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
        query = "SELECT id, name, dims, unit, source FROM series WHERE tenant = ?"
        params: list[Any] = [tenant]
        if name is not None:
            query += " AND name = ?"
            params.append(name)
            if dimensions is not None:
                query += " AND dims = ?"
                params.append(_dims_text(dimensions) if dimensions else "{}")
        with self._db.reading() as conn:
            found = conn.execute(query + " ORDER BY name, dims", params).fetchall()
            out: list[Series] = []
            for series_id, series_name, dims, unit, source in found:
                rows = conn.execute(
                    "SELECT ts, value FROM points WHERE series_id = ? AND ts BETWEEN ? AND ? ORDER BY ts",
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
        query = "SELECT id, name, dims, unit, source, version FROM series WHERE tenant = ?"
        params: list[Any] = [tenant]
        if name is not None:
            query += " AND name = ?"
            params.append(name)
        with self._db.reading() as conn:  # one snapshot: each version goes with the points read
            rows = conn.execute(query + " ORDER BY name, dims", params).fetchall()

            def run(sql: str, args: Sequence[Any]) -> list[Any]:
                return conn.execute(sql, args).fetchall()

            return self._stats.series_stats(
                tenant, rows, run, _fetcher(conn), _WINDOW, start=start, end=end,
                recent_start=recent_start, recent_share=recent_share, tail=tail,
            )  # fmt: skip

    def count_outside(self, key: SeriesKey, *, start: float, end: float, low: float, high: float) -> int:
        with self._db.reading() as conn:
            row = conn.execute(
                "SELECT COUNT(*) FROM points WHERE series_id ="
                " (SELECT id FROM series WHERE tenant = ? AND name = ? AND dims = ?)"
                " AND ts BETWEEN ? AND ? AND (value < ? OR value > ?)",
                (key.tenant, key.name, _dims_text(dict(key.dimensions)), start, end, low, high),
            ).fetchone()
        return int(row[0])

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
        with self._db.reading() as conn:
            rows = conn.execute(
                "SELECT ts, level, message, component, attributes, source FROM logs"
                f" WHERE tenant = ? AND ts BETWEEN ? AND ? ORDER BY ts {order}, id {order} LIMIT ?",
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
        query = "SELECT ts, type, detail, source, dedup_key FROM events WHERE tenant = ? AND ts BETWEEN ? AND ?"
        params: list[Any] = [tenant, lo, hi]
        if type is not None:
            query += " AND type = ?"
            params.append(type)
        with self._db.reading() as conn:
            rows = conn.execute(query + " ORDER BY ts DESC, id DESC LIMIT ?", [*params, limit]).fetchall()
        return [EventRecord(tenant, r[0], r[1], json.loads(r[2]), r[3], r[4]) for r in rows]

    def last_timestamp(self, tenant: str, name: str, dimensions: Dimensions) -> float | None:
        with self._db.reading() as conn:
            row = conn.execute(
                "SELECT MAX(p.ts) FROM points p JOIN series s ON s.id = p.series_id"
                " WHERE s.tenant = ? AND s.name = ? AND s.dims = ?",
                (tenant, name, _dims_text(dimensions) if dimensions else "{}"),
            ).fetchone()
        return float(row[0]) if row and row[0] is not None else None

    def prune(self, *, older_than: float) -> int:
        hour = rollups.bucket_of(older_than)
        with self._db.transaction() as conn:
            conn.execute(_PRUNED_VERSIONS, (older_than,))
            removed = conn.execute(_PRUNE_POINTS, (older_than,)).rowcount
            removed += conn.execute("DELETE FROM logs WHERE ts < ?", (older_than,)).rowcount
            removed += conn.execute("DELETE FROM events WHERE ts < ?", (older_than,)).rowcount
            drop, remake = _PRUNE_ROLLUPS
            conn.execute(drop, {"b": hour})
            conn.execute(remake, {"b": hour, "hi": hour + rollups.BUCKET + rollups.SLACK})
        return int(removed)

    def counts(self, tenant: str | None = None) -> StoreCounts:
        where, params = ("WHERE tenant = ?", [tenant]) if tenant is not None else ("", [])
        with self._db.reading() as conn:
            series = conn.execute(f"SELECT COUNT(*) FROM series {where}", params).fetchone()[0]
            points = conn.execute(
                "SELECT COUNT(*) FROM points"
                + (" WHERE series_id IN (SELECT id FROM series WHERE tenant = ?)" if tenant is not None else ""),
                params,
            ).fetchone()[0]
            logs = conn.execute(f"SELECT COUNT(*) FROM logs {where}", params).fetchone()[0]
            events = conn.execute(f"SELECT COUNT(*) FROM events {where}", params).fetchone()[0]
        return StoreCounts(int(series), int(points), int(logs), int(events))

    def close(self) -> None:
        self._db.close()
