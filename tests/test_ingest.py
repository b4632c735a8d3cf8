"""ingest_telemetry through the MCP client: per-item validation, storage, tenants, and local samples."""

from __future__ import annotations

import time
from typing import Any

import pytest
from pydantic import SecretStr

from server.databases import Databases
from server.settings import Settings
from tests.backend import store_of
from tests.conftest import ServerFactory, call, call_error, connect
from tests.postgres_server import postgres  # noqa: F401 - the fixture

pytestmark = pytest.mark.anyio


async def test_valid_items_are_stored_and_bad_ones_explained(make_server: ServerFactory, settings: Settings) -> None:
    now = time.time()
    metrics: list[Any] = [
        {"name": "api.latency_ms", "value": 120.5, "unit": "Milliseconds", "dimensions": {"Component": "api"}},
        {"name": "api.latency_ms", "value": "fast"},
        {"name": "api.latency_ms", "value": 99, "timestamp": "2026-11-24T10:00:00Z"},
        {"name": "bad name; rm -rf /", "value": 1},
        {"name": "api.errors", "value": "inf"},
        "not an object",
        {"name": "api.rps", "value": 10, "timestamp": now + 86400},
        {"name": "api.rps", "value": 10, "colour": "blue"},
        {"name": "api.rps", "value": 10, "timestamp": 0},
    ]
    logs: list[Any] = [
        {"message": "upstream timed out", "level": "warn", "component": "api"},
        {"message": ""},
        {"message": "ok", "level": "LOUD"},
    ]
    events: list[Any] = [
        {"type": "deployment", "detail": {"version": "1.2"}, "id": "dep-1"},
        {"type": "deployment", "detail": {"version": "1.2"}, "id": "dep-1"},
        {"detail": {}},
    ]
    async with connect(make_server()) as client:
        result = await call(
            client, "ingest_telemetry", {"tenant_id": "acme", "metrics": metrics, "logs": logs, "events": events}
        )
    assert result["tenant_id"] == "acme"
    assert result["accepted"] == {"metrics": 2, "logs": 1, "events": 1, "duplicate_events": 1}
    reasons = {(r["kind"], r["index"]): r["reason"] for r in result["rejections"]}
    assert set(reasons) == {
        ("metric", 1), ("metric", 3), ("metric", 4), ("metric", 5), ("metric", 6), ("metric", 7), ("metric", 8),
        ("log", 1), ("log", 2), ("event", 2),
    }  # fmt: skip
    assert result["rejected"] == 10 and result["has_more"] is False
    assert "older than the retention period (14 days)" in reasons[("metric", 8)]
    assert "value" in reasons[("metric", 1)] and "valid number" in reasons[("metric", 1)]
    assert "name" in reasons[("metric", 3)] and "pattern" in reasons[("metric", 3)]
    assert "finite" in reasons[("metric", 4)]
    assert reasons[("metric", 5)] == "must be an object, got str"
    assert "more than an hour in the future" in reasons[("metric", 6)]
    assert "colour" in reasons[("metric", 7)] and "Extra inputs" in reasons[("metric", 7)]
    assert "level must be one of" in reasons[("log", 2)]
    assert "type" in reasons[("event", 2)] and "Field required" in reasons[("event", 2)]

    with store_of(settings, Databases.telemetry) as store:
        series = {(s.key.name, s.key.dimensions): s for s in store.series("acme")}
        latency = series[("api.latency_ms", (("Component", "api"),))]
        assert latency.values == [120.5] and latency.key.unit == "Milliseconds" and latency.key.source == "agent"
        iso = series[("api.latency_ms", ())]
        assert iso.timestamps == [1795514400.0] and iso.values == [99.0]
        [log] = store.logs("acme")
        assert (log.message, log.level, log.component) == ("upstream timed out", "WARNING", "api")
        [event] = store.events("acme")
        assert event.type == "deployment" and event.dedup_key == "dep-1" and event.detail == {"version": "1.2"}
        assert store.counts("default").points == 0 or all(s.key.source == "local" for s in store.series("default"))


async def test_tenants_are_kept_apart(make_server: ServerFactory, settings: Settings) -> None:
    async with connect(make_server()) as client:
        await call(client, "ingest_telemetry", {"tenant_id": "a", "metrics": [{"name": "m", "value": 1}]})
        await call(client, "ingest_telemetry", {"tenant_id": "b", "metrics": [{"name": "m", "value": 2}]})
    with store_of(settings, Databases.telemetry) as store:
        assert [s.values for s in store.series("a", name="m")] == [[1.0]]
        assert [s.values for s in store.series("b", name="m")] == [[2.0]]


async def test_bad_tenant_and_oversized_push_are_tool_errors(make_server: ServerFactory) -> None:
    async with connect(make_server()) as client:
        error = await call_error(client, "ingest_telemetry", {"tenant_id": "../etc", "metrics": []})
        assert "tenant_id '../etc' is not valid" in error
        many = [{"name": "m", "value": i} for i in range(10_001)]
        error = await call_error(client, "ingest_telemetry", {"tenant_id": "a", "metrics": many})
        assert "10001 items in one call; send at most 10000" in error
        error = await call_error(client, "ingest_telemetry", {"tenant_id": "a", "metrics": "lots"})
        assert "metrics" in error
        ok = await call(client, "ingest_telemetry", {"tenant_id": "a", "metrics": [{"name": "m", "value": 1}]})
        assert ok["accepted"]["metrics"] == 1


async def test_rejections_are_capped_with_has_more(make_server: ServerFactory) -> None:
    bad = [{"name": "m"} for _ in range(150)] + [{"name": "m", "value": 1}]
    async with connect(make_server()) as client:
        result = await call(client, "ingest_telemetry", {"tenant_id": "a", "metrics": bad})
    assert result["accepted"]["metrics"] == 1 and result["rejected"] == 150
    assert len(result["rejections"]) == 100 and result["has_more"] is True


async def test_local_samples_are_recorded(make_server: ServerFactory, settings: Settings) -> None:
    async with connect(make_server(status_max_age_seconds=0)) as client:
        await call(client, "get_system_status")
        await call(client, "get_system_status")
    with store_of(settings, Databases.telemetry) as store:
        series = {(s.key.name, s.key.dimensions): s for s in store.series("default")}
        cpu = series[("host.cpu.percent", (("host", "fakehost"),))]
        assert cpu.values == [10.0, 10.0] and cpu.key.source == "local"
        assert series[("host.disk.percent", (("host", "fakehost"), ("mount", "/")))].values == [40.0, 40.0]
        assert len(series[("host.net.sent_bytes_per_s", (("host", "fakehost"),))].values) == 1  # needs two samples


async def test_old_telemetry_is_pruned_at_start(make_server: ServerFactory, settings: Settings) -> None:
    old = time.time() - 20 * 86400
    async with connect(make_server(telemetry_retention_days=30)) as client:
        result = await call(
            client, "ingest_telemetry", {"tenant_id": "a", "metrics": [{"name": "m", "value": 1, "timestamp": old}]}
        )
        assert result["accepted"]["metrics"] == 1
    async with connect(make_server(telemetry_retention_days=14)) as client:
        await call(client, "get_monitoring_status")  # the lifespan ran, and with it the first pruning
    with store_of(settings, Databases.telemetry) as store:
        assert store.series("a", name="m")[0].values == []


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_values_too_close_to_zero_are_stored_as_zero_and_every_analysis_still_works(
    make_server: ServerFactory, settings: Settings, request: pytest.FixtureRequest, backend: str
) -> None:
    """Magnitudes below CloudWatch's 1e-108 would underflow in the aggregates (PostgreSQL refuses that): stored as 0."""
    url = request.getfixturevalue("postgres").new_database() if backend == "postgresql" else None
    on = settings.model_copy(update={"database_url": SecretStr(url) if url else None})
    now = time.time()
    sent = [5e-324, -1e-200, 1e-108, -2.5e-109, 0.0, 1e-150, 3.0] * 5
    metrics = [{"name": "m", "value": v, "timestamp": now - 600 + i * 10} for i, v in enumerate(sent)]
    async with connect(make_server(database_url=on.database_url)) as client:
        result = await call(client, "ingest_telemetry", {"tenant_id": "acme", "metrics": metrics})
        assert result["accepted"]["metrics"] == len(sent) and result["rejected"] == 0
        await call(client, "query_telemetry_insights", {"tenant_id": "acme", "time_range_hours": 1})  # no error
    with store_of(on, Databases.telemetry) as store:
        [series] = store.series("acme", name="m")
        assert series.values == [v if v == 0 or abs(v) >= 1e-108 else 0.0 for v in sent]
        assert series.values[:4] == [0.0, 0.0, 1e-108, 0.0]
