"""CloudWatch streaming's counts and defaults, against moto in server mode: ``items_ingested`` counts what was stored
(not the bucket every poll re-reads), the first metric fetch reaches back a day, the alarms watched through the queue
show as watched, and three failed polls open a breaker."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from server.databases import Databases
from server.settings import Settings
from telemetry.cloudwatch.config import CloudWatchConfig, MetricWatch
from telemetry.cloudwatch.streamer import CloudWatchStreamer
from telemetry.store.sqlite_store import SqliteTelemetryStore
from tests.backend import store_of
from tests.conftest import ServerFactory, call, connect
from tests.moto_server import CREDENTIALS, FaultServer, MotoServer, client
from tests.polling import eventually

pytestmark = pytest.mark.anyio


def put_series(dims: dict[str, str], values: list[float], end: float) -> None:
    """One point a minute, the last one a minute before ``end``."""
    start = end - 60 * len(values)
    client("cloudwatch").put_metric_data(
        Namespace="Shop",
        MetricData=[
            {
                "MetricName": "Latency",
                "Dimensions": [{"Name": k, "Value": v} for k, v in dims.items()],
                "Timestamp": datetime.fromtimestamp(start + 60 * i, UTC),
                "Value": v,
            }
            for i, v in enumerate(values)
        ],
    )


async def sources(mcp: Client) -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in (await call(mcp, "get_telemetry_sources"))["sources"]}


async def test_repeated_polls_without_new_data_add_nothing(
    aws: MotoServer, make_server: ServerFactory, settings: Settings
) -> None:
    """The operator's run: stepped latency for two tenants and an untagged series; polls with nothing new."""
    end = time.time() - 600  # in period buckets that have ended: moto returns no others
    steps = [100.0] * 10 + [180.0] * 10
    series = [{"Component": "api", "TenantId": "shop"}, {"Component": "api", "TenantId": "blog"}, {"Component": "api"}]
    for dims in series:
        put_series(dims, steps, end)
    watch = CloudWatchConfig(
        metrics=[MetricWatch(namespace="Shop", metric_name="Latency")],
        poll_interval_seconds=0.05,
        retry_attempts=2,
        retry_initial_seconds=0.01,
    )
    async with connect(make_server(enable_cloudwatch_streaming=True, cloudwatch=watch)) as mcp:
        first: dict[str, Any] = {}
        later: dict[str, Any] = {}

        async def ingested() -> bool:
            first.update((await sources(mcp))["cloudwatch.metrics"])
            return bool(first["items_ingested"] >= 60)

        async def polled_again() -> bool:
            later.update((await sources(mcp))["cloudwatch.metrics"])
            return bool(later["polls"] >= first["polls"] + 5)

        await eventually(ingested, "the three series were ingested", timeout=30)
        await eventually(polled_again, "five more polls", timeout=30)
    assert later["last_error"] is None and later["items_ingested"] == 60 == first["items_ingested"]
    with store_of(settings, Databases.telemetry) as store:
        stored = store.series("shop", name="Latency") + store.series("blog", name="Latency")
        stored += store.series("default", name="Latency")
        assert [s.values for s in stored] == [steps] * 3  # every point once


async def test_a_revised_bucket_is_stored_and_counted(aws: MotoServer, tmp_path: Path) -> None:
    """A bucket whose value changed since it was read (a period still filling) replaces the stored point."""
    end = (time.time() - 600) // 60 * 60 + 10  # each point 10 s into its minute: one more second stays in it
    put_series({"Component": "api"}, [50.0, 60.0], end)
    store = SqliteTelemetryStore(tmp_path / "t.db")
    try:
        watch = CloudWatchConfig(metrics=[MetricWatch(namespace="Shop", metric_name="Latency", stat="Sum")])
        streamer = CloudWatchStreamer(watch, store)
        assert await streamer.poll("cloudwatch.metrics") == 2
        assert await streamer.poll("cloudwatch.metrics") == 0
        # A late datum in the last bucket read: its sum changes.
        client("cloudwatch").put_metric_data(
            Namespace="Shop",
            MetricData=[
                {
                    "MetricName": "Latency",
                    "Dimensions": [{"Name": "Component", "Value": "api"}],
                    "Timestamp": datetime.fromtimestamp(end - 60 + 1, UTC),
                    "Value": 5.0,
                }
            ],
        )
        assert await streamer.poll("cloudwatch.metrics") == 1
        assert store.series("default", name="Latency")[0].values == [50.0, 65.0]
        health = {h.name: h for h in streamer.health()}["cloudwatch.metrics"]
        assert health.items_ingested == 3
    finally:
        store.close()


async def test_the_first_metric_fetch_reaches_back_a_day(aws: MotoServer, tmp_path: Path) -> None:
    """The default look-back covers query_telemetry_insights' default window (24 h)."""
    now = time.time()
    put_series({"Component": "api"}, [40.0], now - 20 * 3600)
    put_series({"Component": "api"}, [50.0], now - 600)
    store = SqliteTelemetryStore(tmp_path / "t.db")
    try:
        streamer = CloudWatchStreamer(
            CloudWatchConfig(metrics=[MetricWatch(namespace="Shop", metric_name="Latency")]), store
        )
        assert await streamer.poll("cloudwatch.metrics") == 2
        assert store.series("default", name="Latency")[0].values == [40.0, 50.0]
    finally:
        store.close()


async def test_alarms_watched_through_the_queue_show_as_watched(aws: MotoServer, make_server: ServerFactory) -> None:
    url = client("sqs").create_queue(QueueName="alarm-events")["QueueUrl"]
    watch = CloudWatchConfig(alarm_name_prefix="shop-", sqs_queue_url=url, sqs_wait_seconds=0)
    async with connect(make_server(enable_cloudwatch_streaming=True, cloudwatch=watch)) as mcp:
        found = await sources(mcp)
    alarms, events, metrics = found["cloudwatch.alarms"], found["cloudwatch.events"], found["cloudwatch.metrics"]
    assert alarms["enabled"] is True and alarms["polls"] == 0  # read on demand, not polled
    assert alarms["mode"] == "EventBridge changes via the queue; DescribeAlarms on demand, cached 60 s"
    assert events["enabled"] is True and events["mode"] == "SQS long poll (0 s)"
    assert metrics["enabled"] is False and metrics["mode"] == "off: no metrics configured"


async def test_three_failed_polls_open_a_breaker(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key, value in CREDENTIALS.items():
        monkeypatch.setenv(key, value)
    store = SqliteTelemetryStore(tmp_path / "t.db")
    try:
        with FaultServer(400, "AccessDeniedException", "no") as fault:
            watch = CloudWatchConfig(endpoint_url=fault.url, log_groups=["/app/api"])
            streamer = CloudWatchStreamer(watch, store)
            states = []
            for _ in range(4):
                await streamer.poll("cloudwatch.logs")
                health = {h.name: h for h in streamer.health()}["cloudwatch.logs"]
                assert health.breaker is not None
                states.append(health.breaker.state)
            assert fault.count == 3  # not retried (access denied); nothing sent once open
    finally:
        store.close()
    assert states == ["closed", "closed", "open", "open"]
