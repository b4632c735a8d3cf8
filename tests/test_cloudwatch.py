"""CloudWatch streaming against moto in server mode (real HTTP), through the streamer and the MCP tools."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from server.settings import Settings
from telemetry.cloudwatch.config import CloudWatchConfig, MetricWatch
from telemetry.cloudwatch.metrics import MetricFetcher
from telemetry.cloudwatch.streamer import CloudWatchStreamer
from telemetry.errors import StorageFullError
from telemetry.store.sqlite_store import SqliteTelemetryStore
from tests.conftest import ServerFactory, call, call_error, connect
from tests.moto_server import MotoServer, client
from tests.polling import eventually

pytestmark = pytest.mark.anyio


def put_metrics(namespace: str, name: str, dims: dict[str, str], values: list[float], now: float) -> None:
    cw = client("cloudwatch")
    start = now - 60 * len(values)
    cw.put_metric_data(
        Namespace=namespace,
        MetricData=[
            {
                "MetricName": name,
                "Dimensions": [{"Name": k, "Value": v} for k, v in dims.items()],
                "Timestamp": datetime.fromtimestamp(start + 60 * i, UTC),
                "Value": v,
            }
            for i, v in enumerate(values)
        ],
    )


def config(**overrides: Any) -> CloudWatchConfig:
    base: dict[str, Any] = {"retry_attempts": 2, "retry_initial_seconds": 0.01, "sqs_wait_seconds": 0}
    return CloudWatchConfig.model_validate({**base, **overrides})


async def test_metrics_are_streamed_incrementally_and_routed_by_tenant(aws: MotoServer, tmp_path: Path) -> None:
    # Ten minutes back: moto returns only period buckets that have ended, so no point may sit in the current one.
    now = time.time() - 600
    put_metrics("Shop", "Latency", {"Component": "api", "TenantId": "acme"}, [100, 110, 120], now)
    put_metrics("Shop", "Latency", {"Component": "api"}, [50, 55], now)
    store = SqliteTelemetryStore(tmp_path / "t.db")
    try:
        streamer = CloudWatchStreamer(config(metrics=[MetricWatch(namespace="Shop", metric_name="Latency")]), store)
        assert await streamer.poll("cloudwatch.metrics") == 5
        [acme] = store.series("acme", name="Latency")
        assert acme.values == [100, 110, 120] and acme.key.source == "cloudwatch"
        assert dict(acme.key.dimensions) == {"Component": "api", "TenantId": "acme", "Namespace": "Shop"}
        [default] = store.series("default", name="Latency")
        assert default.values == [50, 55]
        # The next poll starts after the last stored point: only the new one comes in.
        put_metrics("Shop", "Latency", {"Component": "api"}, [60], now + 60)
        await streamer.poll("cloudwatch.metrics")
        assert store.series("default", name="Latency")[0].values == [50, 55, 60]
        health = {h.name: h for h in streamer.health()}["cloudwatch.metrics"]
        assert health.enabled and health.items_ingested >= 6 and health.last_error is None
        assert health.breaker is not None and health.breaker.state == "closed"
    finally:
        store.close()


async def test_logs_are_streamed_with_tenant_level_and_sampling(aws: MotoServer, tmp_path: Path) -> None:
    logs = client("logs")
    logs.create_log_group(logGroupName="/app/api")
    logs.create_log_stream(logGroupName="/app/api", logStreamName="s1")
    now_ms = int(time.time() * 1000)
    events = [{"timestamp": now_ms - 60_000 + i, "message": f"ERROR request {i} failed"} for i in range(30)]
    events.append(
        {"timestamp": now_ms - 1000, "message": json.dumps({"tenant_id": "acme", "level": "warn", "msg": "x"})}
    )
    logs.put_log_events(logGroupName="/app/api", logStreamName="s1", logEvents=events)
    store = SqliteTelemetryStore(tmp_path / "t.db")
    try:
        streamer = CloudWatchStreamer(config(log_group_prefixes=["/app/"], max_log_events_per_poll=10), store)
        assert await streamer.poll("cloudwatch.logs") == 10  # 31 in the window, a sample of 10 kept
        kept = store.logs("default") + store.logs("acme")
        assert len(kept) == 10
        assert all(r.level in ("ERROR", "WARNING") and r.attributes["log_group"] == "/app/api" for r in kept)
        [sampled] = store.events("default", type="log_sampled")
        assert sampled.detail == {"log_group": "/app/api", "events_in_window": 31, "events_kept": 10}
        assert await streamer.poll("cloudwatch.logs") == 0  # the cursor moved past them
    finally:
        store.close()


async def test_late_log_events_are_picked_up_once(aws: MotoServer, tmp_path: Path) -> None:
    logs = client("logs")
    logs.create_log_group(logGroupName="/app/late")
    logs.create_log_stream(logGroupName="/app/late", logStreamName="a")
    logs.create_log_stream(logGroupName="/app/late", logStreamName="b")
    now_ms = int(time.time() * 1000)
    first = [{"timestamp": now_ms - 30_000 + i, "message": f"job {i} done"} for i in range(5)]
    logs.put_log_events(logGroupName="/app/late", logStreamName="a", logEvents=first)
    store = SqliteTelemetryStore(tmp_path / "t.db")
    try:
        streamer = CloudWatchStreamer(config(log_groups=["/app/late"]), store)
        assert await streamer.poll("cloudwatch.logs") == 5
        # Another stream delivers an event stamped before the newest one already read (within the overlap).
        late = [{"timestamp": now_ms - 40_000, "message": "job 99 failed late"}]
        logs.put_log_events(logGroupName="/app/late", logStreamName="b", logEvents=late)
        assert await streamer.poll("cloudwatch.logs") == 1
        assert await streamer.poll("cloudwatch.logs") == 0  # nothing stored twice
        assert sorted(r.message for r in store.logs("default"))[-1] == "job 99 failed late"
        assert len(store.logs("default")) == 6
    finally:
        store.close()


def alarm_event(event_id: str, alarm: str, state: str, previous: str, tenant: str | None = None) -> str:
    dims = {"TenantId": tenant} if tenant else {}
    return json.dumps(
        {
            "id": event_id,
            "detail-type": "CloudWatch Alarm State Change",
            "source": "aws.cloudwatch",
            "time": "2026-11-25T10:00:00Z",
            "detail": {
                "alarmName": alarm,
                "state": {"value": state, "reason": "threshold crossed"},
                "previousState": {"value": previous},
                "configuration": {"metrics": [{"metricStat": {"metric": {"dimensions": dims}}}]},
            },
        }
    )


async def test_eventbridge_alarm_events_from_sqs_are_deduplicated(aws: MotoServer, tmp_path: Path) -> None:
    sqs = client("sqs")
    url = sqs.create_queue(QueueName="alarms")["QueueUrl"]
    for body in (
        alarm_event("e1", "HighLatency", "ALARM", "OK", tenant="acme"),
        alarm_event("e1", "HighLatency", "ALARM", "OK", tenant="acme"),  # re-delivered
        alarm_event("e2", "HighLatency", "OK", "ALARM", tenant="acme"),
        "not json",
    ):
        sqs.send_message(QueueUrl=url, MessageBody=body)
    store = SqliteTelemetryStore(tmp_path / "t.db")
    try:
        streamer = CloudWatchStreamer(config(sqs_queue_url=url), store)
        stored = 0
        for _ in range(5):
            stored += await streamer.poll("cloudwatch.events")
        assert stored == 2
        changes = store.events("acme", type="alarm_state_change")
        assert sorted((e.detail["previous_state"], e.detail["state"]) for e in changes) == [
            ("ALARM", "OK"),
            ("OK", "ALARM"),
        ]
        remaining = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=0).get("Messages", [])
        assert remaining == []  # handled messages, the unreadable one included, were deleted
    finally:
        store.close()


async def test_odd_queue_messages_never_block_the_queue_and_detail_routes_tenants(
    aws: MotoServer, tmp_path: Path
) -> None:
    sqs = client("sqs")
    url = sqs.create_queue(QueueName="odd")["QueueUrl"]
    state_as_text = json.loads(alarm_event("e3", "Broken", "ALARM", "OK"))
    state_as_text["detail"]["state"] = "ALARM"  # a string where an object belongs
    routed = json.loads(alarm_event("e4", "HighErrors", "ALARM", "OK"))
    routed["detail"]["TenantId"] = "beta"
    bad_tenant = json.loads(alarm_event("e5", "Weird", "ALARM", "OK", tenant="Acme Corp; DROP"))
    other = {
        "id": "e6",
        "detail-type": "EC2 Instance State-change Notification",
        "source": "aws.ec2",
        "time": "2026-11-25T10:00:00Z",
        "detail": {"instance-id": "i-1", "state": "stopped", "TenantId": "beta"},
    }
    for body in (state_as_text, routed, bad_tenant, other, [1, 2], {"detail": "x"}):
        sqs.send_message(QueueUrl=url, MessageBody=json.dumps(body))
    store = SqliteTelemetryStore(tmp_path / "t.db")
    try:
        streamer = CloudWatchStreamer(config(sqs_queue_url=url), store)
        for _ in range(4):
            await streamer.poll("cloudwatch.events")
        health = {h.name: h for h in streamer.health()}["cloudwatch.events"]
        assert health.last_error is None and health.breaker is not None and health.breaker.state == "closed"
        beta = {e.type: e for e in store.events("beta")}
        assert beta["alarm_state_change"].detail["alarm"] == "HighErrors"
        assert beta["eventbridge"].detail["detail_type"] == "EC2 Instance State-change Notification"
        default = [e.detail["alarm"] for e in store.events("default", type="alarm_state_change")]
        assert sorted(default) == ["Broken", "Weird"]  # the text state is read as none; a bad TenantId: default
        assert sqs.receive_message(QueueUrl=url, WaitTimeSeconds=0).get("Messages", []) == []
    finally:
        store.close()


async def test_alarm_polling_fallback_and_tools(
    aws: MotoServer, make_server: ServerFactory, settings: Settings
) -> None:
    cw = client("cloudwatch")
    for name in ("app-latency", "app-errors"):
        cw.put_metric_alarm(
            AlarmName=name,
            MetricName="Latency",
            Namespace="Shop",
            Statistic="Average",
            Period=60,
            EvaluationPeriods=1,
            Threshold=100,
            ComparisonOperator="GreaterThanThreshold",
            Dimensions=[{"Name": "TenantId", "Value": "acme"}],
        )
    cw_config = config(alarm_name_prefix="app-", alarm_cache_seconds=0, poll_interval_seconds=0.2)
    server = make_server(enable_cloudwatch_streaming=True, cloudwatch=cw_config)
    async with connect(server) as mcp:
        states = await call(mcp, "get_alarm_states")
        assert [a["name"] for a in states["alarms"]] == ["app-errors", "app-latency"]
        assert [(a["state"], a["tenant"], a["metric"]) for a in states["alarms"]] == [
            (states["alarms"][0]["state"], "acme", "Latency"),
            (states["alarms"][0]["state"], "acme", "Latency"),
        ]
        assert states["alarms"][0]["state"] in ("OK", "INSUFFICIENT_DATA")
        cw.set_alarm_state(AlarmName="app-latency", StateValue="ALARM", StateReason="test: latency high")
        alarmed = await call(mcp, "get_alarm_states", {"state": "ALARM"})
        assert [a["name"] for a in alarmed["alarms"]] == ["app-latency"] and alarmed["total"] == 1
        sources = await call(mcp, "get_telemetry_sources")
        names = {s["name"]: s for s in sources["sources"]}
        assert sources["cloudwatch_enabled"] is True
        assert names["cloudwatch.alarms"]["enabled"] is True and names["cloudwatch.metrics"]["enabled"] is False
        assert names["local"]["breaker"] is None
        status = await call(mcp, "get_system_status")
        assert {s["name"] for s in status["telemetry_sources"]} == set(names)
        access = await call(mcp, "query_audit_log", {"kind": "cloudwatch_access"})
        assert len(access["entries"]) == 2 and access["entries"][0]["detail"]["api"] == "DescribeAlarms"
        started = await call(mcp, "query_audit_log", {"kind": "cloudwatch_stream_started"})
        assert started["entries"][0]["detail"]["sources"] == ["cloudwatch.alarms"]


async def test_alarm_tool_without_cloudwatch(make_server: ServerFactory) -> None:
    async with connect(make_server()) as mcp:
        error = await call_error(mcp, "get_alarm_states", {})
        assert "CloudWatch streaming is off" in error
        sources = await call(mcp, "get_telemetry_sources")
        assert [s["name"] for s in sources["sources"]] == ["local"] and sources["cloudwatch_enabled"] is False


async def test_moto_down_opens_breaker_local_insights_continue_and_recovery(
    aws: MotoServer, make_server: ServerFactory
) -> None:
    now = time.time() - 600  # in period buckets that have ended (see above)
    put_metrics("Shop", "Latency", {"Component": "api"}, [50, 55], now)
    cw_config = config(
        metrics=[MetricWatch(namespace="Shop", metric_name="Latency")],
        poll_interval_seconds=0.1,
        breaker_failure_threshold=2,
        breaker_cooldown_seconds=0.5,
    )
    async with connect(make_server(enable_cloudwatch_streaming=True, cloudwatch=cw_config)) as mcp:
        await wait_for(mcp, lambda m: m["items_ingested"] >= 2)
        aws.stop()
        try:
            opened = await wait_for(mcp, lambda m: m["breaker"]["state"] == "open")
            assert "Could not connect" in opened["last_error"] or "Connect" in opened["last_error"]
            # While CloudWatch is unreachable, insights keep coming from what is stored.
            ingest = [
                {"name": "api.latency_ms", "value": 100 + (i % 3), "timestamp": now - 3600 + i} for i in range(50)
            ]
            await call(mcp, "ingest_telemetry", {"tenant_id": "default", "metrics": ingest})
            insights = await call(mcp, "query_telemetry_insights", {"tenant_id": "default"})
            assert insights["summary"]["series_analysed"] >= 2
        finally:
            aws.start()
        put_metrics("Shop", "Latency", {"Component": "api"}, [60], time.time())
        recovered = await wait_for(mcp, lambda m: m["breaker"]["state"] == "closed" and m["last_error"] is None)
        assert recovered["failures"] >= 2 and recovered["last_success"] is not None
        breaker = await call(mcp, "query_audit_log", {"kind": "cloudwatch_breaker"})
    moves = [(e["detail"]["from"], e["detail"]["to"]) for e in reversed(breaker["entries"])]
    assert moves[0] == ("closed", "open") and moves[-1][1] == "closed", moves


async def wait_for(mcp: Any, predicate: Any, timeout: float = 20.0) -> dict[str, Any]:
    found: dict[str, Any] = {}

    async def holds() -> bool:
        sources = await call(mcp, "get_telemetry_sources")
        found.update({s["name"]: s for s in sources["sources"]}["cloudwatch.metrics"])
        return bool(predicate(found))

    await eventually(holds, "the metrics source reached the state the test waits for", timeout)
    return found


async def test_metrics_go_in_batches_of_500_queries_grouped_by_start(aws: MotoServer, tmp_path: Path) -> None:
    now = time.time() - 600
    cw = client("cloudwatch")
    for first in range(0, 501, 500):
        data = [
            {
                "MetricName": "Depth",
                "Dimensions": [{"Name": "Queue", "Value": f"q{i}"}],
                "Timestamp": datetime.fromtimestamp(now - 120, UTC),
                "Value": float(i),
            }
            for i in range(first, min(first + 500, 501))
        ]
        cw.put_metric_data(Namespace="Jobs", MetricData=data)
    store = SqliteTelemetryStore(tmp_path / "t.db")
    try:
        watch = MetricWatch(namespace="Jobs", metric_name="Depth")
        # An hour back, not the day the default reaches: moto computes every period of the window for each of the
        # 501 queries (ten times slower), and batching does not depend on the look-back.
        fetcher = MetricFetcher(
            config(metrics=[watch], discovery_refresh_seconds=0.001, metric_lookback_seconds=3600), store
        )
        queries: list[int] = []

        def counting(fn: Any) -> Any:
            reply = fn()
            if "MetricDataResults" in reply:
                queries.append(len(reply["MetricDataResults"]))
            return reply

        assert fetcher.fetch(cw, counting) == 501
        assert sorted(queries) == [1, 500]  # two calls: 500 queries, then the one left over
        # A new series (nothing stored: the full look-back) is fetched on its own, not with the up-to-date ones.
        cw.put_metric_data(
            Namespace="Jobs",
            MetricData=[
                {
                    "MetricName": "Depth",
                    "Dimensions": [{"Name": "Queue", "Value": "new"}],
                    "Timestamp": datetime.fromtimestamp(now - 60, UTC),
                    "Value": 1.0,
                }
            ],
        )
        queries.clear()
        fetcher.fetch(cw, counting)
        assert sorted(queries) == [1, 1, 500]  # grouped by start: 500 + 1 up to date, 1 new
    finally:
        store.close()


class FullStore(SqliteTelemetryStore):
    """A store whose disk is full until ``full`` is cleared."""

    full = True

    def add_metrics(self, points: Any) -> int:
        if self.full:
            raise StorageFullError(Path("/data"), "database or disk is full")
        return super().add_metrics(points)


async def test_a_full_data_directory_is_not_held_against_cloudwatch(aws: MotoServer, tmp_path: Path) -> None:
    """Storing failed, not AWS: the breaker stays closed (else CloudWatch would be cut off for the cool-down), the
    health says why nothing came in, and the points arrive once there is space."""
    now = time.time() - 600
    put_metrics("Shop", "Latency", {"Component": "api"}, [50, 55], now)
    store = FullStore(tmp_path / "t.db")
    try:
        watch = [MetricWatch(namespace="Shop", metric_name="Latency")]
        streamer = CloudWatchStreamer(config(metrics=watch, breaker_failure_threshold=1), store)
        for _ in range(3):
            assert await streamer.poll("cloudwatch.metrics") == 0
        health = {h.name: h for h in streamer.health()}["cloudwatch.metrics"]
        assert health.breaker is not None and health.breaker.state == "closed"
        assert health.failures == 0 and health.last_error is not None and "is full" in health.last_error
        store.full = False
        assert await streamer.poll("cloudwatch.metrics") == 2
        assert store.series("default", name="Latency")[0].values == [50, 55]
    finally:
        store.close()


class FullEventStore(SqliteTelemetryStore):
    """A store whose disk is full for events until ``full`` is cleared."""

    full = True

    def add_events(self, events: Any) -> int:
        if self.full:
            raise StorageFullError(Path("/data"), "database or disk is full")
        return super().add_events(events)


async def test_alarm_events_that_could_not_be_stored_are_stored_when_space_returns(
    aws: MotoServer, tmp_path: Path
) -> None:
    """A message whose event could not be stored stays on the queue, and its re-delivery is not taken for a repeat."""
    sqs = client("sqs")
    url = sqs.create_queue(QueueName="alarms-full", Attributes={"VisibilityTimeout": "0"})["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody=alarm_event("e9", "HighLatency", "ALARM", "OK", tenant="acme"))
    store = FullEventStore(tmp_path / "t.db")
    try:
        streamer = CloudWatchStreamer(config(sqs_queue_url=url), store)
        assert await streamer.poll("cloudwatch.events") == 0
        store.full = False
        stored = 0
        for _ in range(20):  # re-delivered at once (no visibility timeout); bounded
            stored += await streamer.poll("cloudwatch.events")
            if stored:
                break
        assert stored == 1
        assert [e.detail["state"] for e in store.events("acme", type="alarm_state_change")] == ["ALARM"]
    finally:
        store.close()
