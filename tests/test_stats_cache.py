"""The aggregates kept between analyses (``telemetry.store.stats_cache``): an analysis reads again only the series that
changed, and what it answers is what a store without the cache answers — whatever was written, replaced or pruned,
by this store or by another one on the same database (another process on the SQLite file, another replica)."""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from telemetry.store.pg_db import PostgresDatabase
from telemetry.store.pg_store import PostgresTelemetryStore
from telemetry.store.records import MetricPoint, Moments, SeriesStats, TelemetryStore
from telemetry.store.sqlite_store import SqliteTelemetryStore
from telemetry.store.stats_cache import StatsCache, Window
from tests.conftest import ServerFactory, call, connect
from tests.postgres_server import PostgresServer, postgres  # noqa: F401 - the fixture

BASE = 1_700_000_000.0 - 1_700_000_000.0 % 3600
HOUR = 3600.0
_tenants = itertools.count()

Pair = tuple[TelemetryStore, TelemetryStore, StatsCache]


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def stores(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    """Two stores on one database: ``cached`` keeps aggregates, ``plain`` keeps none (and writes as another process or
    replica would)."""
    cache = StatsCache()
    if request.param == "sqlite":
        path = tmp_path_factory.mktemp("stats") / "t.db"
        cached, plain = (
            SqliteTelemetryStore(path, stats_cache=cache),
            SqliteTelemetryStore(path, stats_cache=StatsCache(0)),
        )
        yield cached, plain, cache
        cached.close()
        plain.close()
        return
    server: PostgresServer = request.getfixturevalue("postgres")
    url = server.new_database()
    db_a, db_b = PostgresDatabase(url), PostgresDatabase(url)
    try:
        yield (
            PostgresTelemetryStore(db_a, stats_cache=cache),
            PostgresTelemetryStore(db_b, stats_cache=StatsCache(0)),
            cache,
        )
    finally:
        db_a.close()
        db_b.close()


def same(got: list[SeriesStats], expected: list[SeriesStats]) -> None:
    """Equal aggregates (the database sums the same points; only the last bits of a float sum may differ)."""
    assert [s.key for s in got] == [s.key for s in expected]
    for a, b in zip(got, expected, strict=True):
        assert (a.time_origin, a.value_origin, a.last_timestamp, a.tail_mean) == (
            b.time_origin, b.value_origin, b.last_timestamp, b.tail_mean,
        )  # fmt: skip
        for mine, theirs in ((a.baseline, b.baseline), (a.recent, b.recent)):
            assert mine.count == theirs.count
            for field in ("sum_y", "sum_yy", "sum_x", "sum_xx", "sum_xy"):
                # the same points, summed over other hours' rollups when the window moved: equal up to rounding
                assert getattr(mine, field) == pytest.approx(getattr(theirs, field), rel=1e-9, abs=1e-3), field


# mostly on a 10-minute grid, so that points are replaced and the same windows asked again
moments = st.one_of(st.integers(0, 30).map(lambda m: BASE + m * 600.0), st.floats(0, 5 * HOUR).map(lambda s: BASE + s))
# two windows, and the same moved a little (often the same points: the kept entry answers) or a lot
WINDOWS = [
    (BASE + lo + shift, BASE + hi + shift)
    for lo, hi in ((0.0, 5 * HOUR), (HOUR, 3.5 * HOUR))
    for shift in (0.0, 1.0, -299.0, 450.0)
]
writes = st.tuples(
    st.sampled_from(["cached", "plain"]),  # which store writes it
    st.integers(0, 2),  # which series
    st.lists(st.tuples(moments, st.integers(-50, 50).map(float)), min_size=1, max_size=6),
)
write = writes.map(lambda w: ("write", w))
query = st.tuples(st.sampled_from(WINDOWS), st.sampled_from([0.25, 0.5])).map(lambda q: ("query", q))
prune = st.integers(0, 6).map(lambda m: ("prune", BASE + m * 600.0))  # the oldest hour's points, some of them
operations = st.lists(st.one_of(write, query, write, query, prune), min_size=1, max_size=30)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=operations)
def test_an_analysis_with_the_cache_reads_what_one_without_it_reads(stores: Pair, steps: list[Any]) -> None:
    """Every query is asked twice, once per store: with the cache, after any mix of writes through either store and
    prunes, the answer is the one read afresh. Fails if a write by the other store, a replaced point or a prune left
    a stale entry."""
    cached, plain, _ = stores
    tenant = f"t{next(_tenants)}"
    for kind, arg in steps:
        if kind == "write":
            writer, series, points = arg
            store = cached if writer == "cached" else plain
            store.add_metrics([MetricPoint(tenant, "latency_ms", t, v, {"s": str(series)}) for t, v in points])
        elif kind == "prune":
            # other tenants' points go too: their examples are over
            cached.prune(older_than=arg)
        else:
            (start, end), share = arg
            for _ in range(2):  # the second asks the cache what the first put there
                got = cached.series_stats(tenant, start=start, end=end, recent_share=share)
                same(got, plain.series_stats(tenant, start=start, end=end, recent_share=share))


def test_only_the_series_that_changed_are_read_again(stores: Pair) -> None:
    cached, plain, cache = stores
    tenant = f"t{next(_tenants)}"
    for s in range(10):
        cached.add_metrics(
            [MetricPoint(tenant, "latency_ms", BASE + i * 60, float(i % 7), {"s": str(s)}) for i in range(300)]
        )
    window = {"start": BASE, "end": BASE + 6 * HOUR, "recent_share": 0.25}
    cached.series_stats(tenant, **window)
    hits, misses = cache.hits, cache.misses
    cached.series_stats(tenant, **window)
    assert (cache.hits - hits, cache.misses - misses) == (10, 0)
    # a minute later the window has moved on, over no new point: still the same points, no query
    later = {**window, "end": window["end"] + 60}
    same(cached.series_stats(tenant, **later), plain.series_stats(tenant, **later))
    assert (cache.hits - hits, cache.misses - misses) == (20, 0)
    # a window that starts after the first point has other points: read again
    cached.series_stats(tenant, **{**window, "start": BASE + 30})
    assert (cache.hits - hits, cache.misses - misses) == (20, 10)
    # and so has one that starts early enough to take the point before them again
    same(cached.series_stats(tenant, **window), plain.series_stats(tenant, **window))
    assert (cache.hits - hits, cache.misses - misses) == (20, 20)
    # series 3's point in the middle of the window changed through the other store (another process, another
    # replica): the window's first and newest points are the same, yet that series alone is read again
    before = cached.series_stats(tenant, **window)[3]
    plain.add_metrics([MetricPoint(tenant, "latency_ms", BASE + 100 * 60, 1000.0, {"s": "3"})])
    hits, misses = cache.hits, cache.misses
    got = cached.series_stats(tenant, **window)
    assert (cache.hits - hits, cache.misses - misses) == (9, 1)
    assert got[3].baseline.sum_y > before.baseline.sum_y + 900
    same(got, plain.series_stats(tenant, **window))


def test_the_cache_is_bounded() -> None:
    cache = StatsCache(3)
    for sid in range(10):
        window = Window(0, -math.inf, (1.0, 1.0), 2.0, math.inf, Moments(), Moments(), 1.0)
        cache.put((sid, 0.25, None, 12), window)
    assert len(cache) == 3
    assert cache.get((9, 0.25, None, 12), 0, 1.0, 2.0) is not None
    assert cache.get((0, 0.25, None, 12), 0, 1.0, 2.0) is None


@pytest.mark.anyio
async def test_a_degradation_pushed_after_a_first_analysis_is_found_by_the_next(make_server: ServerFactory) -> None:
    """Through the MCP client: the first analysis sees a steady series (and caches it), new worse points arrive, the
    next analysis finds the degradation — it does not answer from what it kept."""
    now = time.time()
    steady = [
        {
            "name": "api.latency_ms",
            "value": 100.0 + i % 5,
            "timestamp": now - 7200 + i * 30,
            "dimensions": {"Component": "api"},
        }
        for i in range(200)
    ]
    async with connect(make_server()) as client:
        await call(client, "ingest_telemetry", {"tenant_id": "acme", "metrics": steady})
        first = await call(client, "query_telemetry_insights", {"tenant_id": "acme"})
        assert first["insights"] == []
        worse = [
            {
                "name": "api.latency_ms",
                "value": 300.0 + i % 5,
                "timestamp": now - 1200 + i * 10,
                "dimensions": {"Component": "api"},
            }
            for i in range(100)
        ]
        await call(client, "ingest_telemetry", {"tenant_id": "acme", "metrics": worse})
        second = await call(client, "query_telemetry_insights", {"tenant_id": "acme"})
    assert "degradation" in [i["kind"] for i in second["insights"]], second["insights"]
