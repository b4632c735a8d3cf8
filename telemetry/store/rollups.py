"""Hourly rollups of metric points, so that an analysis of a long window reads one row per series and hour instead of
every point.

Each (series, hour) keeps the count and the sums a :class:`~telemetry.store.records.Moments` needs, taken relative to
the hour's start (time) and to a reference value (the first value stored in that hour): small numbers, so variances
do not cancel. The store keeps them exact in the transaction that writes the points: a batch's change of each hour
is summed here (a replaced point's old value taken out) and added in one statement per hour (per-row triggers
halved the ingest rate), and a prune makes the rollups of the hour it cuts again from the points left. A window's
moments are then the rollups of the hours wholly inside it, shifted to the window's origins, plus the points of the
(at most two) hours its edges cut.

Both backends share this plan and their SQL (named parameters, ``:name``, turned into psycopg's style for
PostgreSQL); only the bucket expression differs.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence

from telemetry.store.records import Moments

BUCKET = 3600.0  # seconds per rollup
SLACK = 1.0  # far beyond rounding: a point of an hour lies within [hour - SLACK, hour + BUCKET + SLACK)

# An hour's start as SQLite computes it (floor without the optional math functions: CAST truncates toward zero).
SQLITE_BUCKET = "((CAST({ts} / 3600.0 AS INTEGER) - ({ts} / 3600.0 < CAST({ts} / 3600.0 AS INTEGER))) * 3600.0)"
POSTGRES_BUCKET = "(floor({ts} / 3600.0) * 3600.0)"

_SHIFTED = (
    "SELECT COALESCE(SUM(n), 0), COALESCE(SUM(sy + n * (ref - :v0)), 0),"
    " COALESCE(SUM(syy + 2 * (ref - :v0) * sy + n * (ref - :v0) * (ref - :v0)), 0),"
    " COALESCE(SUM(sx + n * (bucket - :t0)), 0),"
    " COALESCE(SUM(sxx + 2 * (bucket - :t0) * sx + n * (bucket - :t0) * (bucket - :t0)), 0),"
    " COALESCE(SUM(sxy + (ref - :v0) * sx + (bucket - :t0) * sy + n * (bucket - :t0) * (ref - :v0)), 0)"
    " FROM rollups WHERE series_id = :id AND bucket > :blo AND bucket < :bhi"
)
_POINTS = (
    "SELECT COUNT(*), COALESCE(SUM(value - :v0), 0), COALESCE(SUM((value - :v0) * (value - :v0)), 0),"
    " COALESCE(SUM(ts - :t0), 0), COALESCE(SUM((ts - :t0) * (ts - :t0)), 0),"
    " COALESCE(SUM((ts - :t0) * (value - :v0)), 0) FROM points WHERE series_id = :id AND ts >= :lo AND ts < :hi"
)

Fetch = Callable[[str, Mapping[str, float]], Moments]


def bucket_of(ts: float) -> float:
    """The start of the hour ``ts`` belongs to (the same float the database's bucket expressions give)."""
    return math.floor(ts / BUCKET) * BUCKET


def queries(bucket_sql: str, *, postgres: bool = False) -> tuple[str, str, str]:
    """(rollups wholly inside, points of a range, points of a range in one hour) with the backend's bucket SQL and,
    for ``postgres``, psycopg's ``%(name)s`` parameters."""
    out = (_SHIFTED, _POINTS, _POINTS + " AND " + bucket_sql.format(ts="ts") + " = :b")
    if not postgres:
        return out
    shifted, points, edge = (_named(sql) for sql in out)
    return shifted, points, edge


def range_moments(
    fetch: Fetch, sql: tuple[str, str, str], series_id: int, lo: float, hi: float, t0: float, v0: float
) -> Moments:
    """Moments of one series' points with ``lo <= ts < hi`` relative to (``t0``, ``v0``): ``fetch`` runs a query
    of ``sql`` (see :func:`queries`) with its parameters and returns the row as :class:`Moments`."""
    shifted, points, edge = sql
    base = {"id": series_id, "t0": t0, "v0": v0}
    if hi <= lo:
        return Moments()
    blo, bhi = bucket_of(lo), bucket_of(hi)
    if bhi - blo <= BUCKET:  # no whole hour inside: the points themselves (two hours at most)
        return fetch(points, {**base, "lo": lo, "hi": hi})
    # Every point has lo <= ts < hi => blo <= its hour <= bhi (flooring is monotonic): the first hour's points,
    # the whole hours strictly between (all of whose points lie inside), and the last hour's points below hi.
    inside = fetch(shifted, {**base, "blo": blo, "bhi": bhi})
    first = fetch(edge, {**base, "lo": lo, "hi": min(hi, blo + BUCKET + SLACK), "b": blo})
    last = fetch(edge, {**base, "lo": max(lo, bhi - SLACK), "hi": hi, "b": bhi})
    return first + inside + last


def split_moments(
    fetch: Fetch,
    sql: tuple[str, str, str],
    series_id: int,
    start: float,
    split: float,
    end: float,
    first: tuple[float, float],
) -> tuple[Moments, Moments]:
    """A window [start, end] split at ``split``: the moments before it and from it on (``end`` included), relative to
    the window's ``first`` point (timestamp, value)."""
    t0, v0 = first
    baseline = range_moments(fetch, sql, series_id, start, split, t0, v0)
    return baseline, range_moments(fetch, sql, series_id, split, math.nextafter(end, math.inf), t0, v0)


def schema(*, postgres: bool = False) -> str:
    """The rollup table, with the rollups of the points already stored (a store from before them)."""
    real, count = ("DOUBLE PRECISION", "BIGINT") if postgres else ("REAL", "INTEGER")
    return f"""
CREATE TABLE rollups (
    series_id {count} NOT NULL,
    bucket {real} NOT NULL,
    ref {real} NOT NULL,
    n {count} NOT NULL,
    sx {real} NOT NULL, sxx {real} NOT NULL, sy {real} NOT NULL, syy {real} NOT NULL, sxy {real} NOT NULL,
    PRIMARY KEY (series_id, bucket)
){"" if postgres else " WITHOUT ROWID"};
{backfill(POSTGRES_BUCKET if postgres else SQLITE_BUCKET)};
"""


# A batch's change of one hour, with its own reference value, added to the stored sums shifted to theirs.
_ADD_HEAD = "INSERT INTO rollups (series_id, bucket, ref, n, sx, sxx, sy, syy, sxy)"
_ADD_KEYS = ("id", "b", "ref", "n", "sx", "sxx", "sy", "syy", "sxy")  # the keys of a change, in the head's order
_ADD_INTEGERS = frozenset({"id", "n"})  # the series id and the count; the rest are floats
_ADD_TAIL = (
    "ON CONFLICT (series_id, bucket) DO UPDATE SET n = rollups.n + excluded.n, sx = rollups.sx + excluded.sx,"
    " sxx = rollups.sxx + excluded.sxx, sy = rollups.sy + excluded.sy + excluded.n * (excluded.ref - rollups.ref),"
    " syy = rollups.syy + excluded.syy + 2 * (excluded.ref - rollups.ref) * excluded.sy"
    " + excluded.n * (excluded.ref - rollups.ref) * (excluded.ref - rollups.ref),"
    " sxy = rollups.sxy + excluded.sxy + (excluded.ref - rollups.ref) * excluded.sx"
)


def add_unnest_sql() -> str:
    """Add every change of :func:`changes` to its hour's rollup, in one PostgreSQL statement: the columns as arrays,
    in :func:`add_columns`' order (series ids and counts ``bigint[]``, the rest ``float8[]``)."""
    types = ["bigint" if key in _ADD_INTEGERS else "float8" for key in _ADD_KEYS]
    arrays = ", ".join(f"%s::{kind}[]" for kind in types)
    return f"{_ADD_HEAD} SELECT * FROM unnest({arrays}) {_ADD_TAIL}"


def add_columns(changes: Sequence[Mapping[str, float]]) -> list[list[float]]:
    """The changes as one list per column, for :func:`add_unnest_sql`."""
    return [[int(c[key]) if key in _ADD_INTEGERS else float(c[key]) for c in changes] for key in _ADD_KEYS]


def add_rows(changes: Sequence[Mapping[str, float]]) -> tuple[str, list[tuple[float, ...]], str]:
    """Adding changes to their hours' rollups in SQLite: (the INSERT before ``VALUES``, the changes as positional rows,
    the ON CONFLICT clause after them), for statements of many rows."""
    return _ADD_HEAD, [tuple(change[key] for key in _ADD_KEYS) for change in changes], _ADD_TAIL


def changes(
    written: Mapping[tuple[int, float], float], replaced: Mapping[tuple[int, float], float]
) -> list[dict[str, float]]:
    """The rollup changes of a batch: ``written`` (series id, timestamp) -> value, of which ``replaced`` held the
    old value. One row per (series, hour), for :func:`add_unnest_sql` or :func:`add_rows`."""
    sums: dict[tuple[int, float], list[float]] = {}
    for (series_id, ts), value in written.items():
        b = bucket_of(ts)
        x = ts - b
        row = sums.get((series_id, b))
        if row is None:
            row = sums[(series_id, b)] = [value, 0, 0.0, 0.0, 0.0, 0.0, 0.0]
        ref = row[0]
        old = replaced.get((series_id, ts))
        y = value - ref
        if old is None:
            row[1] += 1
            row[2] += x
            row[3] += x * x
            row[4] += y
            row[5] += y * y
            row[6] += x * y
        else:  # take the old value out, put the new one in
            z = old - ref
            row[4] += y - z
            row[5] += y * y - z * z
            row[6] += x * (y - z)
    keys = ("ref", "n", "sx", "sxx", "sy", "syy", "sxy")
    return [{"id": sid, "b": b, **dict(zip(keys, row, strict=True))} for (sid, b), row in sums.items()]


def stored(
    written: Mapping[tuple[int, float], float], span: Callable[[int, float, float], Iterable[tuple[float, float]]]
) -> dict[tuple[int, float], float]:
    """The values stored at the (series, timestamp) keys of ``written``, the points a batch replaces: ``span`` gives
    one series' stored (timestamp, value) between two moments, asked once per series (nothing, when a batch only adds
    newer points)."""
    spans: dict[int, tuple[float, float]] = {}
    for series_id, ts in written:
        lo, hi = spans.get(series_id, (ts, ts))
        spans[series_id] = (min(lo, ts), max(hi, ts))
    found: dict[tuple[int, float], float] = {}
    for series_id, (lo, hi) in spans.items():
        for ts, value in span(series_id, lo, hi):
            if (series_id, ts) in written:
                found[(series_id, ts)] = value
    return found


def prune_sql(*, postgres: bool = False) -> tuple[str, str]:
    """After the points before a moment went: (drop the rollups of its hour and before, make those of the points
    left there again), with ``:b`` that hour and ``:hi`` past its end."""
    bucket_sql = POSTGRES_BUCKET if postgres else SQLITE_BUCKET
    drop = "DELETE FROM rollups WHERE bucket <= :b"
    # series by series on the points' primary key (series_id, ts): there is no index on the time alone to keep up
    remake = backfill(bucket_sql, where="{sid} IN (SELECT id FROM series) AND {ts} < :hi AND " + bucket_sql + " <= :b")
    return (_named(drop), _named(remake)) if postgres else (drop, remake)


def _named(sql: str) -> str:
    return re.sub(r"(?<!:):([a-z0-9_]+)", r"%(\1)s", sql)


def backfill(bucket_sql: str, *, where: str = "TRUE") -> str:
    """Rollups of the stored points that ``where`` (a condition on ``{ts}`` and ``{sid}``, a point's time and series)
    selects (each hour's reference: its smallest value)."""
    b = bucket_sql.format(ts="p.ts")
    return f"""
INSERT INTO rollups (series_id, bucket, ref, n, sx, sxx, sy, syy, sxy)
SELECT p.series_id, g.bucket, g.ref, COUNT(*), SUM(p.ts - g.bucket), SUM((p.ts - g.bucket) * (p.ts - g.bucket)),
    SUM(p.value - g.ref), SUM((p.value - g.ref) * (p.value - g.ref)), SUM((p.ts - g.bucket) * (p.value - g.ref))
FROM points p JOIN (
    SELECT series_id, {bucket_sql.format(ts="ts")} AS bucket, MIN(value) AS ref FROM points
    WHERE {where.format(ts="ts", sid="series_id")} GROUP BY 1, 2
) g ON g.series_id = p.series_id AND g.bucket = {b}
WHERE {where.format(ts="p.ts", sid="p.series_id")}
GROUP BY p.series_id, g.bucket, g.ref
"""
