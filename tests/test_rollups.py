"""The hourly rollups behind ``series_stats``: whatever was inserted, replaced or pruned, a window's aggregates equal
those of its points, counted one by one — on both backends, for windows cut anywhere (on an hour, inside one, across
many), and for a store filled before the rollups existed."""

from __future__ import annotations

import itertools
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from telemetry.store.pg_db import PostgresDatabase
from telemetry.store.pg_store import PostgresTelemetryStore
from telemetry.store.records import MetricPoint, Moments, TelemetryStore, split_time
from telemetry.store.sqlite_store import SqliteTelemetryStore
from tests.postgres_server import PostgresServer, postgres  # noqa: F401 - the fixture

BASE = 1_700_000_000.0 - 1_700_000_000.0 % 3600  # an hour's start
HOUR = 3600.0
_tenants = itertools.count()

# A moment within five hours from BASE: often exactly on an hour or a minute, otherwise anywhere.
moments = st.one_of(
    st.integers(0, 5).map(lambda h: BASE + h * HOUR),
    st.integers(0, 300).map(lambda m: BASE + m * 60.0),
    st.floats(0, 5 * HOUR, allow_nan=False).map(lambda s: BASE + s),
)
# what ingest stores: 0, or a magnitude within CloudWatch's range (1e-108 to 1e108)
values = st.one_of(
    st.integers(-50, 50).map(float),
    st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False).map(lambda v: v if abs(v) >= 1e-108 else 0.0),
)
batches = st.lists(st.lists(st.tuples(moments, values), min_size=1, max_size=40), min_size=1, max_size=5)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TelemetryStore]:
    """One store per backend for the module: every example writes to a tenant of its own."""
    if request.param == "sqlite":
        sqlite_store = SqliteTelemetryStore(tmp_path_factory.mktemp("rollups") / "t.db")
        yield sqlite_store
        sqlite_store.close()
        return
    server: PostgresServer = request.getfixturevalue("postgres")
    db = PostgresDatabase(server.new_database())
    try:
        yield PostgresTelemetryStore(db)
    finally:
        db.close()


def by_hand(points: list[tuple[float, float]], lo: float, hi: float, t0: float, v0: float, *, closed: bool) -> Moments:
    inside = [(t, v) for t, v in points if lo <= t and (t <= hi if closed else t < hi)]
    xs, ys = [t - t0 for t, _ in inside], [v - v0 for _, v in inside]
    return Moments(
        len(inside), sum(ys), sum(y * y for y in ys), sum(xs), sum(x * x for x in xs),
        sum(x * y for x, y in zip(xs, ys, strict=True)),
    )  # fmt: skip


def assert_close(got: Moments, expected: Moments) -> None:
    assert got.count == expected.count
    for field in ("sum_y", "sum_yy", "sum_x", "sum_xx", "sum_xy"):
        assert getattr(got, field) == pytest.approx(getattr(expected, field), rel=1e-9, abs=1e-3), field


def check_window(store: TelemetryStore, tenant: str, start: float, end: float, share: float) -> None:
    [series] = store.series(tenant, start=start, end=end)  # the points themselves
    points = list(zip(series.timestamps, series.values, strict=True))
    [stats] = store.series_stats(tenant, start=start, end=end, recent_share=share)
    if not points:
        assert stats.count == 0
        return
    (t0, v0), newest = points[0], points[-1][0]
    split = split_time(t0, newest, share)
    assert (stats.time_origin, stats.value_origin, stats.last_timestamp) == (t0, v0, newest)
    assert_close(stats.baseline, by_hand(points, start, split, t0, v0, closed=False))
    assert_close(stats.recent, by_hand(points, split, end, t0, v0, closed=True))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    batches=batches,
    prune=st.one_of(st.none(), moments),
    windows=st.lists(st.tuples(moments, moments, st.sampled_from([0.1, 0.25, 0.5, 0.9])), min_size=1, max_size=4),
)
def test_a_windows_aggregates_are_those_of_its_points(
    store: TelemetryStore,
    batches: list[list[tuple[float, float]]],
    prune: float | None,
    windows: list[tuple[float, float, float]],
) -> None:
    tenant = f"t{next(_tenants)}"
    for batch in batches:  # a moment given twice, in one batch or two, replaces its value
        store.add_metrics([MetricPoint(tenant, "m", ts, value, {"h": "a"}) for ts, value in batch])
    if prune is not None:
        store.prune(older_than=prune)
    for a, b, share in windows:
        check_window(store, tenant, min(a, b), max(a, b), share)
    check_window(store, tenant, BASE - HOUR, BASE + 6 * HOUR, 0.25)  # every point


def test_a_store_from_before_the_rollups_gets_them_on_start(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    store = SqliteTelemetryStore(path)
    points = [MetricPoint("t", "m", BASE + i * 97.0, float(i % 17), {}) for i in range(400)]
    store.add_metrics(points)
    store.close()
    with sqlite3.connect(path) as conn:  # as a store of the version before
        conn.execute("DROP TABLE rollups")
    store = SqliteTelemetryStore(path)
    try:
        with sqlite3.connect(path) as conn:
            assert conn.execute("SELECT SUM(n) FROM rollups").fetchone()[0] == 400
        store.add_metrics([MetricPoint("t", "m", BASE + 5 * 97.0, 1000.0, {})])  # replaces one
        check_window(store, "t", BASE + 1000.0, BASE + 30_000.0, 0.3)
        check_window(store, "t", BASE, BASE + 400 * 97.0, 0.5)
    finally:
        store.close()


def test_batches_written_at_once_from_many_threads_are_all_stored_with_their_rollups(store: TelemetryStore) -> None:
    """Ingests that queue up behind a write are committed together (SQLite): every point of every thread is stored,
    each thread's later value for a moment replaces its earlier one, and the rollups agree with the points."""
    tenant = f"t{next(_tenants)}"
    threads, batches, size = 8, 12, 150
    expected: dict[tuple[str, float], float] = {}
    plans: list[list[list[MetricPoint]]] = []
    for worker in range(threads):
        plan = []
        for batch in range(batches):
            # moments of this worker only (no two workers race for one); each batch rewrites half the previous one's
            first = (batch * size // 2) * threads + worker
            points = [
                MetricPoint(
                    tenant, "m", BASE + (first + k * threads) * 0.5, float(worker * 1000 + batch), {"h": f"s{k % 3}"}
                )
                for k in range(size)
            ]
            for p in points:
                expected[(p.dimensions["h"], p.timestamp)] = p.value
            plan.append(points)
        plans.append(plan)
    start = threading.Barrier(threads)
    failures: list[BaseException] = []

    def push(plan: list[list[MetricPoint]]) -> None:
        try:
            start.wait(timeout=60)
            for points in plan:
                assert store.add_metrics(points) == len(points)
        except BaseException as exc:  # reported by the test's thread
            failures.append(exc)

    workers = [threading.Thread(target=push, args=(plan,)) for plan in plans]
    for worker_thread in workers:
        worker_thread.start()
    for worker_thread in workers:
        worker_thread.join(timeout=120)
    assert failures == []
    stored = {
        (series.key.dimensions[0][1], ts): value
        for series in store.series(tenant, name="m")
        for ts, value in zip(series.timestamps, series.values, strict=True)
    }
    assert stored == expected
    for share in (0.25, 0.9):
        for series_name in ("s0", "s1", "s2"):
            [series] = store.series(tenant, name="m", dimensions={"h": series_name})
            points = list(zip(series.timestamps, series.values, strict=True))
            [stats] = [s for s in store.series_stats(tenant, start=BASE - HOUR, end=BASE + 6 * HOUR, recent_share=share)
                       if s.key.dimensions == (("h", series_name),)]  # fmt: skip
            (t0, v0), newest = points[0], points[-1][0]
            split = split_time(t0, newest, share)
            assert_close(stats.baseline, by_hand(points, BASE - HOUR, split, t0, v0, closed=False))
            assert_close(stats.recent, by_hand(points, split, BASE + 6 * HOUR, t0, v0, closed=True))
