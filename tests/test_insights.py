"""query_telemetry_insights through the MCP client, on telemetry pushed with ingest_telemetry."""

from __future__ import annotations

import math
import time
from typing import Any

import pytest
from mcp import Client

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
    assert all(o["risk"] == "low" for o in cautious["opportunities"])


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
