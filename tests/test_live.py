"""Live analysis at ingest time, through the MCP client: anomalies on metric series, error patterns on logs."""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from telemetry.learning.live import PatternWatch
from telemetry.store.records import LogRecord
from telemetry.store.sqlite_store import SqliteTelemetryStore
from tests.conftest import ServerFactory, call, call_error, connect

pytestmark = pytest.mark.anyio
STEP = 300.0


def points(name: str, dims: dict[str, str], values: list[float], start: float) -> list[dict[str, Any]]:
    return [{"name": name, "value": v, "timestamp": start + i * STEP, "dimensions": dims} for i, v in enumerate(values)]


async def push(client: Client, tenant: str, metrics: list[dict[str, Any]], chunk: int = 500) -> None:
    for i in range(0, len(metrics), chunk):
        result = await call(client, "ingest_telemetry", {"tenant_id": tenant, "metrics": metrics[i : i + chunk]})
        assert result["rejected"] == 0, result["rejections"]


def noisy(n: int, seed: int) -> list[float]:
    rng = random.Random(seed)
    return [100 + rng.gauss(0, 2) for _ in range(n)]


async def test_a_spike_in_a_live_series_becomes_an_anomaly_insight_that_survives_restart(
    make_server: ServerFactory,
) -> None:
    now = time.time()
    values = noisy(800, seed=1)
    values[700] = 400.0
    start = now - len(values) * STEP
    dims = {"Component": "api", "host": "a"}
    async with connect(make_server()) as client:
        await push(client, "shop", points("api.latency_ms", dims, values, start))
        await push(client, "shop", points("api.queue_depth", {"Component": "api"}, noisy(800, seed=2), start))
        await push(client, "other", points("api.latency_ms", dims, noisy(800, seed=3), start))
        result = await call(client, "query_telemetry_insights", {"tenant_id": "shop", "time_range_hours": 72})
        other = await call(client, "query_telemetry_insights", {"tenant_id": "other", "time_range_hours": 72})
    anomalies = [i for i in result["insights"] if i["kind"] == "anomaly"]
    assert len(anomalies) == 1, anomalies
    [found] = anomalies
    assert found["metric"] == "api.latency_ms" and found["dimensions"] == dims and found["component"] == "api"
    assert found["evidence"]["occurrences"] == 1 and found["evidence"]["latest_value"] == 400.0
    assert found["evidence"]["typical_value"] == pytest.approx(100, abs=3)
    assert found["detected_at"] == pytest.approx(start + 700 * STEP)
    assert result["summary"]["by_kind"].get("anomaly") == 1
    assert [i for i in other["insights"] if i["kind"] == "anomaly"] == []

    # Detections are stored: a restarted server (fresh detectors) still reports them.
    async with connect(make_server()) as client:
        again = await call(client, "query_telemetry_insights", {"tenant_id": "shop", "time_range_hours": 72})
        narrow = await call(
            client, "query_telemetry_insights", {"tenant_id": "shop", "time_range_hours": 72, "metric_name": "x"}
        )
    assert [i["id"] for i in again["insights"] if i["kind"] == "anomaly"] == [found["id"]]
    assert narrow["insights"] == []


async def test_points_arriving_late_are_stored_but_not_judged(make_server: ServerFactory) -> None:
    now = time.time()
    values = noisy(600, seed=4)
    start = now - len(values) * STEP
    async with connect(make_server()) as client:
        await push(client, "t", points("db.latency_ms", {}, values, start))
        late = [{"name": "db.latency_ms", "value": 10_000.0, "timestamp": start + 100 * STEP + 1}]
        stored = await call(client, "ingest_telemetry", {"tenant_id": "t", "metrics": late})
        result = await call(client, "query_telemetry_insights", {"tenant_id": "t", "time_range_hours": 72})
    assert stored["accepted"]["metrics"] == 1
    assert [i for i in result["insights"] if i["kind"] == "anomaly"] == []


def log_lines(now: float) -> list[dict[str, Any]]:
    refused = [
        {
            "message": f"Connection to db-{i % 4} refused after {100 + i} ms",
            "level": "ERROR",
            "component": "api",
            "timestamp": now - 600 + i,
        }
        for i in range(30)
    ]
    ok = [{"message": f"GET /items/{1000 + i} returned 200 in {i} ms", "timestamp": now - 500 + i} for i in range(50)]
    # Raw lines with their header: the content is mined, level and component read from the header.
    raw = [{"message": f"2026-11-30 10:00:0{i},123 WARN worker: Job {17 + i} failed: timeout"} for i in range(5)]
    old = [{"message": "old failure 1", "level": "ERROR", "timestamp": now - 3 * 86400}]
    return refused + ok + raw + old


async def test_logs_are_grouped_into_patterns_with_counts_errors_and_components(make_server: ServerFactory) -> None:
    now = time.time()
    async with connect(make_server()) as client:
        stored = await call(client, "ingest_telemetry", {"tenant_id": "shop", "logs": log_lines(now)})
        assert stored["accepted"]["logs"] == 86
        await call(
            client,
            "ingest_telemetry",
            {"tenant_id": "other", "logs": [{"message": "secret thing failed", "level": "ERROR"}]},
        )
        result = await call(client, "query_error_patterns", {"tenant_id": "shop"})
        capped = await call(client, "query_error_patterns", {"tenant_id": "shop", "limit": 1})
        insights = await call(client, "query_telemetry_insights", {"tenant_id": "shop", "kinds": ["error_pattern"]})
    by_template = {p["template"]: p for p in result["patterns"]}
    refused = by_template["Connection to <*> refused after <*> ms"]  # a fixed unit stays a word
    assert refused["count"] == 30 and refused["error_count"] == 30 and refused["error_share_percent"] == 100.0
    assert refused["components"] == ["api"] and refused["example"] == "Connection to db-0 refused after 100 ms"
    assert refused["first_seen"] == pytest.approx(now - 600) and refused["last_seen"] == pytest.approx(now - 571)
    ok = by_template["GET <*> returned <*> in <*> ms"]
    assert ok["count"] == 50 and ok["error_count"] == 0
    job = by_template["Job <*> failed: timeout"]
    assert job["count"] == 5 and job["components"] == ["worker"] and job["levels"] == {"WARN": 5}
    assert result["patterns"][0]["template"] == refused["template"]  # most errors first
    assert result["lines"] == 85 and result["error_lines"] == 35  # the 3-day-old line is outside the window
    assert result["total_patterns"] == 3 and result["has_more"] is False
    assert not any("secret" in p["template"] for p in result["patterns"])
    assert len(capped["patterns"]) == 1 and capped["has_more"] is True

    kinds = {(i["kind"], i["component"]) for i in insights["insights"]}
    assert ("error_pattern", "api") in kinds and ("error_pattern", "worker") in kinds
    api_opportunity = [o for o in insights["opportunities"] if o["component"] == "api"]
    assert api_opportunity and api_opportunity[0]["metric"] == "log.errors"


async def test_patterns_are_rebuilt_from_the_store_after_a_restart(make_server: ServerFactory) -> None:
    now = time.time()
    async with connect(make_server()) as client:
        await call(client, "ingest_telemetry", {"tenant_id": "shop", "logs": log_lines(now)})
        before = await call(client, "query_error_patterns", {"tenant_id": "shop"})
    async with connect(make_server()) as client:
        after = await call(client, "query_error_patterns", {"tenant_id": "shop"})
        more = [{"message": "Connection to db-9 refused after 5 ms", "level": "ERROR", "timestamp": now}]
        await call(client, "ingest_telemetry", {"tenant_id": "shop", "logs": more})
        grown = await call(client, "query_error_patterns", {"tenant_id": "shop"})
    counts = {p["template"]: p["count"] for p in before["patterns"]}
    assert {p["template"]: p["count"] for p in after["patterns"]} == counts
    assert grown["patterns"][0]["count"] == 31 and grown["lines"] == before["lines"] + 1


async def test_error_patterns_bad_arguments(make_server: ServerFactory) -> None:
    async with connect(make_server()) as client:
        assert "not valid" in await call_error(client, "query_error_patterns", {"tenant_id": "a b"})
        assert "limit" in await call_error(client, "query_error_patterns", {"limit": 0})
        assert "time_range_hours" in await call_error(client, "query_error_patterns", {"time_range_hours": -1})
        empty = await call(client, "query_error_patterns", {"tenant_id": "nobody"})
    assert empty["patterns"] == [] and empty["lines"] == 0 and empty["has_more"] is False


async def test_after_a_restart_a_series_is_primed_from_its_stored_history(make_server: ServerFactory) -> None:
    now = time.time()
    values = noisy(700, seed=5)
    start = now - 800 * STEP
    async with connect(make_server()) as client:
        await push(client, "t", points("api.errors_per_s", {"Component": "api"}, values, start))
        before = await call(client, "query_telemetry_insights", {"tenant_id": "t", "time_range_hours": 96})
    seen = sum(int(i["evidence"]["occurrences"]) for i in before["insights"] if i["kind"] == "anomaly")
    # A new process: the detector would need 300 points of warm-up, but it is primed with the stored ones,
    # so a spike on the very next point is caught (and what priming replays is not reported again).
    spike = [
        {
            "name": "api.errors_per_s",
            "value": 500.0,
            "timestamp": start + 700 * STEP,
            "dimensions": {"Component": "api"},
        }
    ]
    async with connect(make_server()) as client:
        await call(client, "ingest_telemetry", {"tenant_id": "t", "metrics": spike})
        result = await call(client, "query_telemetry_insights", {"tenant_id": "t", "time_range_hours": 96})
    [found] = [i for i in result["insights"] if i["kind"] == "anomaly"]
    assert found["evidence"]["occurrences"] == seen + 1 and found["evidence"]["latest_value"] == 500.0


def test_pattern_rebuild_keeps_the_newest_lines_when_bounded(tmp_path: Path) -> None:
    store = SqliteTelemetryStore(tmp_path / "t.db")
    try:
        now = time.time()
        old = [LogRecord("t", now - 7200 + i, f"old thing {i} happened") for i in range(50)]
        new = [LogRecord("t", now - 60 + i, f"Disk {i} failed with code {i * 7}", "ERROR") for i in range(30)]
        store.add_logs(old + new)
        watch = PatternWatch(store, replay_limit=30, clock=lambda: now)
        report = watch.report("t", now - 86400, now, limit=10)
    finally:
        store.close()
    assert report.lines == 30 and report.error_lines == 30
    assert [p.template for p in report.patterns] == ["Disk <*> failed with code <*>"]


async def test_anomalies_know_which_way_is_bad_and_cannot_be_faked(make_server: ServerFactory) -> None:
    now = time.time()
    start = now - 800 * STEP
    faster = noisy(800, seed=1)
    faster[700] = 5.0  # latency collapsing is a surprise, not a problem to fix
    async with connect(make_server()) as client:
        await push(client, "t", points("api.latency_ms", {"Component": "api"}, faster, start))
        fake = {"type": "anomaly", "detail": {"metric": "db.latency_ms", "series": "x", "value": 1e9, "score": 1}}
        await call(client, "ingest_telemetry", {"tenant_id": "t", "events": [fake]})
        result = await call(client, "query_telemetry_insights", {"tenant_id": "t", "time_range_hours": 96})
    anomalies = [i for i in result["insights"] if i["kind"] == "anomaly"]
    assert [i["metric"] for i in anomalies] == ["api.latency_ms"]  # the pushed "anomaly" event is not one
    assert anomalies[0]["evidence"]["direction"] == "up_is_bad" and anomalies[0]["evidence"]["worse"] == 0.0
    assert result["opportunities"] == []
