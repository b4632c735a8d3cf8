"""query_telemetry_insights through the MCP client, on telemetry pushed with ingest_telemetry."""

from __future__ import annotations

import math
import random
import time
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from telemetry.learning.trends import Direction, degradation, degradation_of, trend, trend_of
from telemetry.store.records import MetricPoint, split_time
from telemetry.store.sqlite_store import SqliteTelemetryStore
from tests.conftest import ServerFactory, call, call_error, connect

pytestmark = pytest.mark.anyio
STEP = 300  # five minutes


def wave(i: int) -> float:
    return 5 * math.sin(i / 7)  # deterministic noise


async def push(client: Client, tenant: str, points: list[dict[str, Any]]) -> None:
    for i in range(0, len(points), 5000):
        result = await call(client, "ingest_telemetry", {"tenant_id": tenant, "metrics": points[i : i + 5000]})
        assert result["rejected"] == 0, result["rejections"]


def series(name: str, dims: dict[str, str], values: list[float], now: float) -> list[dict[str, Any]]:
    start = now - len(values) * STEP
    return [{"name": name, "value": v, "timestamp": start + i * STEP, "dimensions": dims} for i, v in enumerate(values)]


async def test_a_worsening_from_a_zero_baseline_has_no_percentage_and_ranks_as_a_full_gain(
    make_server: ServerFactory,
) -> None:
    """A baseline of zeros (the server's own host.cpu.iowait_percent had one) has no percentage change: the
    evidence says null, which the output schema allows, and the opportunity counts the whole value as the gain."""
    now = time.time()
    n = 24 * 12
    iowait = [0.0 if i < n * 0.8 else 0.4 for i in range(n)]  # the step inside the newest quarter: zeros before
    async with connect(make_server()) as client:
        await push(client, "host", series("disk.iowait_percent", {"Component": "disk"}, iowait, now))
        result = await call(client, "query_telemetry_insights", {"tenant_id": "host"})
    (insight,) = result["insights"]
    assert insight["kind"] == "degradation" and insight["evidence"]["change_percent"] is None
    assert insight["evidence"]["baseline_mean"] == 0 and 0.2 < insight["evidence"]["recent_mean"] < 0.4
    assert "from a baseline of zero" in insight["summary"] and "inf" not in insight["summary"]
    (opportunity,) = result["opportunities"]
    assert opportunity["performance_gain"] == 100 and opportunity["insight_ids"] == [insight["id"]]


async def test_degradation_trend_and_opportunity(make_server: ServerFactory) -> None:
    now = time.time()
    n = 24 * 12  # a day of five-minute points
    slow = [100 + wave(i) if i < n * 0.75 else 160 + wave(i) for i in range(n)]
    steady = [100 + wave(i) for i in range(n)]
    falling = [1000 - 2 * i + wave(i) for i in range(n)]  # requests/s sliding down all day
    async with connect(make_server()) as client:
        await push(client, "shop", series("api.latency_ms", {"Component": "api", "host": "a"}, slow, now))
        await push(client, "shop", series("api.latency_ms", {"Component": "api", "host": "b"}, steady, now))
        await push(client, "shop", series("checkout.requests_per_s", {"Component": "checkout"}, falling, now))
        await push(client, "other", series("api.latency_ms", {"Component": "api", "host": "a"}, slow, now))
        result = await call(client, "query_telemetry_insights", {"tenant_id": "shop"})
        only_trends = await call(client, "query_telemetry_insights", {"tenant_id": "shop", "kinds": ["trend"]})
        one_metric = await call(client, "query_telemetry_insights", {"tenant_id": "shop", "metric_name": "nope"})
        capped = await call(client, "query_telemetry_insights", {"tenant_id": "shop", "limit": 1})
        cautious = await call(client, "query_telemetry_insights", {"tenant_id": "shop", "risk_tolerance": "low"})
    insights = {(i["kind"], i["metric"], i["dimensions"].get("host")): i for i in result["insights"]}
    assert set(insights) == {("degradation", "api.latency_ms", "a"), ("trend", "checkout.requests_per_s", None)}
    slow_api = insights[("degradation", "api.latency_ms", "a")]
    assert slow_api["component"] == "api" and slow_api["severity"] == "high"  # +60 %
    assert slow_api["evidence"]["change_percent"] == pytest.approx(60, abs=3)
    assert slow_api["evidence"]["z_score"] > 10 and slow_api["evidence"]["direction"] == "up_is_bad"
    assert slow_api["tenant"] == "shop"
    trend = insights[("trend", "checkout.requests_per_s", None)]
    assert trend["evidence"]["direction"] == "down_is_bad" and trend["evidence"]["relative_change_percent"] < -20

    by_component = {o["component"]: o for o in result["opportunities"]}
    api = by_component["api"]
    assert api["metric"] == "api.latency_ms" and api["performance_gain"] == pytest.approx(60, abs=3)
    assert api["affected_users"] == 50.0  # one of the two api hosts
    assert api["frequency"] == 100.0  # every recent point is beyond baseline + 3 sigma
    assert api["impact_score"] == pytest.approx(api["performance_gain"] * 50 * 100 / 100, rel=1e-3)
    assert api["insight_ids"] == [slow_api["id"]] and api["goal"] == "bring api.latency_ms back down to its baseline"
    scores = [o["impact_score"] for o in result["opportunities"]]
    assert scores == sorted(scores, reverse=True)

    assert result["summary"]["by_kind"] == {"degradation": 1, "trend": 1}
    assert result["summary"]["series_analysed"] == 3 and result["has_more"] is False
    assert [i["kind"] for i in only_trends["insights"]] == ["trend"]
    assert one_metric["insights"] == [] and one_metric["summary"]["series_analysed"] == 0
    assert len(capped["insights"]) == 1 and capped["has_more"] is True
    assert len(capped["opportunities"]) == 1 and capped["opportunities_has_more"] is True
    assert result["opportunities_has_more"] is False
    assert [o["component"] for o in only_trends["opportunities"]] == ["checkout"]  # only from the chosen kinds
    assert [(o["component"], o["risk"]) for o in cautious["opportunities"]] == [("checkout", "low")]  # api: medium


async def test_steady_data_gives_no_insights(make_server: ServerFactory) -> None:
    now = time.time()
    async with connect(make_server()) as client:
        await push(
            client, "calm", series("api.latency_ms", {"Component": "api"}, [50 + wave(i) for i in range(288)], now)
        )
        result = await call(client, "query_telemetry_insights", {"tenant_id": "calm"})
    assert result["insights"] == [] and result["opportunities"] == [] and result["summary"]["total"] == 0


async def test_insight_ids_are_stable(make_server: ServerFactory) -> None:
    now = time.time()
    values = [100 + wave(i) if i < 216 else 250 + wave(i) for i in range(288)]
    async with connect(make_server()) as client:
        await push(client, "t", series("db.query_duration", {"Component": "db"}, values, now))
        first = await call(client, "query_telemetry_insights", {"tenant_id": "t"})
        second = await call(client, "query_telemetry_insights", {"tenant_id": "t"})
    assert [i["id"] for i in first["insights"]] == [i["id"] for i in second["insights"]] != []
    assert first["insights"][0]["severity"] == "critical"  # +150 %


async def test_bad_arguments(make_server: ServerFactory) -> None:
    async with connect(make_server()) as client:
        assert "not valid" in await call_error(client, "query_telemetry_insights", {"tenant_id": "a b"})
        assert "time_range_hours" in await call_error(client, "query_telemetry_insights", {"time_range_hours": 0})
        assert "kinds" in await call_error(client, "query_telemetry_insights", {"kinds": ["gossip"]})
        assert "limit" in await call_error(client, "query_telemetry_insights", {"limit": 1000})


def random_points(rng: random.Random, index: int, start: float, recent_start: float, end: float) -> list[MetricPoint]:
    """Irregular points around the window (some outside it, some on its edges) at scales from 1e-3 to 1e9."""
    scale = 10 ** rng.uniform(-3, 9)
    shape = index % 5  # flat noise, a step in the recent part, a trend, a constant, only a few points
    count = 4 if shape == 4 else rng.randint(20, 400)
    stamps = {rng.uniform(start - 3600, end + 3600) for _ in range(count)}
    if index % 3 == 0:
        stamps |= {start, recent_start, end}
    points = []
    for ts in sorted(stamps):
        value = scale * (1 + 0.01 * rng.gauss(0, 1))
        if shape == 1 and ts >= recent_start:
            value += scale * rng.choice([-0.5, 0.5])
        elif shape == 2:
            value += scale * 0.3 * (ts - start) / (end - start)
        elif shape == 3:
            value = scale
        points.append(MetricPoint("t", f"m{index % 4}", ts, value, {"host": f"h{index}"}))
    return points


def test_store_aggregates_give_the_numbers_of_the_points(tmp_path: Path) -> None:
    rng = random.Random(20240601)
    end = 1_700_000_000.0
    start, recent_start = end - 86400, end - 21600
    store = SqliteTelemetryStore(tmp_path / "t.db")
    try:
        for index in range(60):
            store.add_metrics(random_points(rng, index, start, recent_start, end))
        store.add_metrics([MetricPoint("t", "m0", start - 10, 1.0, {"host": "outside"})])
        listed = store.series("t", start=start, end=end)
        stats = store.series_stats("t", start=start, end=end, recent_start=recent_start)
        assert [s.key for s in stats] == [s.key for s in listed]
        assert [s.key for s in store.series_stats("t", name="m1", start=start, end=end, recent_start=end)] == [
            s.key for s in listed if s.key.name == "m1"
        ]
        compared = 0
        for series, aggregates in zip(listed, stats, strict=True):
            assert aggregates.count == len(series.values)
            if not series.values:
                continue
            assert aggregates.last_timestamp == series.timestamps[-1]
            expected_trend, got_trend = trend(series.timestamps, series.values), trend_of(aggregates)
            assert (got_trend is None) == (expected_trend is None)
            if expected_trend is not None and got_trend is not None:
                scale = abs(expected_trend.long_average)
                assert got_trend.points == expected_trend.points
                assert got_trend.long_average == pytest.approx(expected_trend.long_average, rel=1e-12)
                assert got_trend.short_average == pytest.approx(expected_trend.short_average, rel=1e-12)
                assert got_trend.slope_per_hour == pytest.approx(
                    expected_trend.slope_per_hour, rel=1e-6, abs=1e-9 * scale
                )
                assert got_trend.relative_change_percent == pytest.approx(
                    expected_trend.relative_change_percent, rel=1e-6, abs=1e-7
                )
            directions: tuple[Direction, ...] = ("up_is_bad", "down_is_bad")
            for direction in directions:
                expected = degradation(series.timestamps, series.values, recent_start=recent_start, direction=direction)
                got = degradation_of(aggregates, direction=direction)
                assert (got is None) == (expected is None)
                if expected is None or got is None:
                    continue
                compared += 1
                scale = abs(expected.baseline_mean)
                assert got.baseline_mean == pytest.approx(expected.baseline_mean, rel=1e-12)
                assert got.recent_mean == pytest.approx(expected.recent_mean, rel=1e-12)
                assert got.baseline_std == pytest.approx(expected.baseline_std, rel=1e-6, abs=1e-9 * scale)
                assert got.z_score == pytest.approx(expected.z_score, rel=1e-6, abs=1e-6)
                assert got.change_percent == pytest.approx(expected.change_percent, rel=1e-9, abs=1e-9)
                if abs(expected.z_score) > 1e-9:  # a constant series' recent mean may round either way
                    assert got.worse == expected.worse
                low = expected.baseline_mean - 3 * expected.baseline_std
                high = expected.baseline_mean + 3 * expected.baseline_std
                recent = [v for t, v in zip(series.timestamps, series.values, strict=True) if t >= recent_start]
                outside = store.count_outside(series.key, start=recent_start, end=end, low=low, high=high)
                assert outside == sum(1 for v in recent if v < low or v > high)
                above = store.count_outside(series.key, start=recent_start, end=end, low=-math.inf, high=high)
                assert above == sum(1 for v in recent if v > high)
        assert compared > 40
    finally:
        store.close()


def test_store_splits_each_series_at_its_own_history_when_given_a_share(tmp_path: Path) -> None:
    """``recent_share``: each series' newest quarter of the points it has in the window, wherever they begin."""
    rng = random.Random(20261205)
    end = 1_700_000_000.0
    start = end - 86400
    store = SqliteTelemetryStore(tmp_path / "t.db")
    try:
        for index in range(40):
            first = rng.uniform(start, end - 3600)  # histories from one hour to a whole day
            store.add_metrics(random_points(rng, index, first, first + 0.75 * (end - first), end))
        compared = 0
        listed = store.series("t", start=start, end=end)
        stats = store.series_stats("t", start=start, end=end, recent_share=0.25)
        for series, aggregates in zip(listed, stats, strict=True):
            if not series.values:
                continue
            split = split_time(series.timestamps[0], series.timestamps[-1], 0.25)
            expected = degradation(series.timestamps, series.values, recent_start=split, direction="up_is_bad")
            got = degradation_of(aggregates, direction="up_is_bad")
            assert (got is None) == (expected is None)
            if expected is not None and got is not None:
                compared += 1
                assert got.baseline_mean == pytest.approx(expected.baseline_mean, rel=1e-12)
                assert got.recent_mean == pytest.approx(expected.recent_mean, rel=1e-12)
                assert aggregates.recent.count == sum(1 for t in series.timestamps if t >= split)
        assert compared > 20
    finally:
        store.close()
