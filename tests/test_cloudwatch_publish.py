"""Publishing the server's own metrics to CloudWatch, and ``cloudwatch setup --dashboard --alarms``, against moto
in server mode (real HTTP): batches within the PutMetricData limits, the server end to end through the MCP client,
a dead endpoint that neither crashes nor blocks the server and is caught up once it is back, the final flush, and
the dashboard and alarms made, left alone when right, and put back when edited."""

from __future__ import annotations

import json
import logging
import subprocess
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import anyio
import anyio.to_thread
import pytest

from generators.deploy import SqliteAuditLog
from server.cloudwatch_publishing import ServerFigures, server_name
from server.metrics import ServerMetrics
from telemetry.cloudwatch.aws import AwsClients
from telemetry.cloudwatch.breaker import BreakerStatus
from telemetry.cloudwatch.config import CloudWatchConfig
from telemetry.cloudwatch.dashboard import alarm_specs, dashboard_name
from telemetry.cloudwatch.publisher import Datum, MetricPublisher
from telemetry.cloudwatch.streamer import SourceHealth
from tests.conftest import ServerFactory, call, call_error, connect
from tests.moto_server import CREDENTIALS, FaultServer, MotoServer, client, free_port
from tests.polling import eventually
from tests.test_cloudwatch_setup import setup as run_setup

pytestmark = pytest.mark.anyio
NAMESPACE = "SelfBuildingMCP"
SERVER = "test-host.example"


def config(**overrides: Any) -> CloudWatchConfig:
    base: dict[str, Any] = {"retry_attempts": 2, "retry_initial_seconds": 0.01}
    return CloudWatchConfig.model_validate({**base, **overrides})


def once(datums: Sequence[Datum]) -> Callable[[], list[Datum]]:
    """A figures source that gives ``datums`` on the first call and nothing after."""
    batches = [list(datums)]
    return lambda: batches.pop() if batches else []


def datum(name: str, value: float, **dimensions: str) -> Datum:
    dims = [{"Name": k, "Value": v} for k, v in {"Server": SERVER, **dimensions}.items()]
    return {"MetricName": name, "Dimensions": dims, "Timestamp": datetime.now(UTC), "Value": value, "Unit": "Count"}


def statistics(name: str, server: str = SERVER, endpoint: str | None = None, **dimensions: str) -> dict[str, float]:
    """Sum, SampleCount, Minimum and Maximum of every datapoint of the last ten minutes (none: empty)."""
    import boto3

    cw = boto3.client("cloudwatch", region_name="us-east-1", endpoint_url=endpoint)
    dims = [{"Name": k, "Value": v} for k, v in {"Server": server, **dimensions}.items()]
    now = time.time()
    points = cw.get_metric_statistics(
        Namespace=NAMESPACE,
        MetricName=name,
        Dimensions=dims,
        StartTime=datetime.fromtimestamp(now - 600, UTC),
        EndTime=datetime.fromtimestamp(now + 600, UTC),
        Period=60,
        Statistics=["Sum", "SampleCount", "Minimum", "Maximum"],
    )["Datapoints"]
    if not points:
        return {}
    return {
        "Sum": sum(p["Sum"] for p in points),
        "SampleCount": sum(p["SampleCount"] for p in points),
        "Minimum": min(p["Minimum"] for p in points),
        "Maximum": max(p["Maximum"] for p in points),
    }


def count_puts(clients: AwsClients) -> list[tuple[int, int]]:
    """(datums, request body bytes) of each PutMetricData request the clients send."""
    sent: list[tuple[int, int]] = []
    pending: list[int] = []
    events = clients.client("cloudwatch").meta.events
    events.register("before-parameter-build.cloudwatch.PutMetricData", lambda params, **_: pending.append(
        len(params["MetricData"])))  # fmt: skip
    events.register("before-send.cloudwatch.PutMetricData", lambda request, **_: sent.append(
        (pending.pop(), len(request.body or b""))))  # fmt: skip
    return sent


async def test_more_than_1000_datums_go_in_several_calls_and_all_arrive(aws: MotoServer) -> None:
    cw_config = config()
    clients = AwsClients(cw_config)
    sent = count_puts(clients)
    datums = [datum(f"Figure{i:04d}", float(i)) for i in range(2500)]
    publisher = MetricPublisher(cw_config, NAMESPACE, once(datums), interval_seconds=60, clients=clients)
    assert await publisher.publish() == 2500
    assert [n for n, _ in sent] == [1000, 1000, 500]
    assert all(size < 1_000_000 for _, size in sent)
    health = publisher.health()
    assert (health.datums_sent, health.batches_sent, health.buffered, health.failures) == (2500, 3, 0, 0)
    assert health.last_success is not None and health.breaker.state == "closed"

    listed = client("cloudwatch").get_paginator("list_metrics").paginate(Namespace=NAMESPACE)
    names = {m["MetricName"] for page in listed for m in page["Metrics"]}
    assert names == {f"Figure{i:04d}" for i in range(2500)}
    for i in (0, 999, 1000, 2499):
        assert statistics(f"Figure{i:04d}") == {"Sum": i, "SampleCount": 1, "Minimum": i, "Maximum": i}


async def test_batches_also_stay_within_the_byte_budget(aws: MotoServer) -> None:
    cw_config = config()
    clients = AwsClients(cw_config)
    sent = count_puts(clients)
    datums = [datum(f"Wide{i}", 1.0, Detail="x" * 200) for i in range(300)]
    size = len(json.dumps(datums[0], default=str, separators=(",", ":")))
    budget = 20 * size + size // 2  # room for 20 datums a call
    publisher = MetricPublisher(
        cw_config, NAMESPACE, once(datums), interval_seconds=60, clients=clients, batch_bytes=budget
    )
    assert await publisher.publish() == 300
    assert [n for n, _ in sent] == [20] * 15
    listed = client("cloudwatch").list_metrics(Namespace=NAMESPACE, MetricName="Wide299")["Metrics"]
    assert len(listed) == 1


@pytest.fixture
def credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in CREDENTIALS.items():
        monkeypatch.setenv(key, value)
    for key in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)


@pytest.mark.usefixtures("credentials")
async def test_buffer_is_bounded_and_the_breaker_stops_calls(caplog: pytest.LogCaptureFixture) -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens
    cw_config = config(endpoint_url=endpoint, retry_attempts=1, breaker_failure_threshold=2,
                       breaker_cooldown_seconds=600)  # fmt: skip
    clients = AwsClients(cw_config)
    sent = count_puts(clients)
    step = iter(range(1000))
    publisher = MetricPublisher(
        cw_config, NAMESPACE, lambda: [datum("Tick", next(step)) for _ in range(30)], interval_seconds=60,
        clients=clients, max_buffered=50,
    )  # fmt: skip
    with caplog.at_level(logging.INFO, logger="telemetry.cloudwatch.publisher"):
        for _ in range(4):
            assert await publisher.publish() == 0
    assert len(sent) == 2  # two failures opened the breaker; the next publishes did not call
    health = publisher.health()
    assert health.breaker.state == "open" and health.failures == 2 and health.buffered == 50
    assert health.datums_dropped == 4 * 30 - 50 and "EndpointConnectionError" in (health.last_error or "")
    assert any("buffer full" in r.message and r.levelno == logging.WARNING for r in caplog.records)
    assert any("publishing paused (breaker open" in r.message for r in caplog.records)


@pytest.mark.usefixtures("credentials")
async def test_a_batch_aws_refuses_as_invalid_is_dropped_not_retried_forever() -> None:
    with FaultServer(400, "InvalidParameterValue", "The value NaN for parameter Value is invalid.") as fault:
        cw_config = config(endpoint_url=fault.url, breaker_failure_threshold=1)
        publisher = MetricPublisher(cw_config, NAMESPACE, once([datum("Bad", 1.0)]), interval_seconds=60)
        assert await publisher.publish() == 0
        assert await publisher.publish() == 0
    health = publisher.health()
    assert health.buffered == 0 and health.datums_dropped == 1 and health.breaker.state == "closed"
    assert fault.requests == ["GraniteServiceVersion20100801.PutMetricData"]  # once: not retried, not resent


def test_figures_of_an_interval() -> None:
    """The mapping: deltas per interval after the starting point, the weighted success rate, latency statistics,
    breaker states."""
    metrics = ServerMetrics()
    tallies = {"cycles": {"completed": 5, "failed": 1}, "candidates": {"kept": 7, "rolled_back": 2}}
    stats = SimpleNamespace(calls=10, failures=0, latency_ms_total=20_000.0, prompt_tokens=0, completion_tokens=0,
                            recent_latencies_ms=[1000.0] * 10)  # fmt: skip
    breakers = [("cloudwatch.metrics", "open"), ("cloudwatch.logs", "closed")]
    health = [
        SourceHealth(name=n, enabled=True, breaker=BreakerStatus(state=s, consecutive_failures=0)) for n, s in breakers
    ]
    metrics.services = SimpleNamespace(  # type: ignore[assignment]
        cloudwatch=SimpleNamespace(health=lambda: health),
        improvements=SimpleNamespace(store=SimpleNamespace(tallies=lambda: tallies)),
        llm=SimpleNamespace(stats=stats),
        detections=SimpleNamespace(pending=0, failures=0),
        analysis_process=None,
    )
    now = [100.0]
    figures = ServerFigures(metrics, SERVER, monotonic=lambda: now[0])
    figures.prime()  # the earlier cycles and requests are not this run's

    metrics.tool_call("get_system_status", False, 0.1)
    metrics.tool_call("get_alarm_states", True, 0.1)
    metrics.on_stored("metric", {("api", "acme"): 40})
    tallies["cycles"].update(completed=8, interrupted=1)  # three completed and one interrupted: 75 %
    tallies["candidates"].update(kept=9, rolled_back=3)
    stats.calls, stats.latency_ms_total = 12, 20_000.0 + 5_000.0 + 70_000.0
    stats.recent_latencies_ms += [5_000.0, 70_000.0]
    now[0] += 20
    got = {(d["MetricName"], *(x["Value"] for x in d["Dimensions"][1:])): d for d in figures()}
    value = {key: d.get("Value") for key, d in got.items()}
    assert value[("ToolCalls",)] == 2 and value[("ToolErrors",)] == 1 and value[("TelemetryThroughput",)] == 2
    assert value[("Rollbacks",)] == 1 and value[("EvolutionLevel",)] == 9
    assert got[("CycleSuccessRate",)]["StatisticValues"] == {
        "SampleCount": 4, "Sum": 300.0, "Minimum": 0.0, "Maximum": 100.0
    }  # fmt: skip
    assert got[("CodeGenerationLatency",)]["StatisticValues"] == {
        "SampleCount": 2, "Sum": 75.0, "Minimum": 5.0, "Maximum": 70.0
    }  # fmt: skip
    assert value[("BreakerState", "cloudwatch.metrics")] == 2 and value[("BreakerState", "cloudwatch.logs")] == 0
    assert value[("BreakersOpen",)] == 1
    assert all(d["Dimensions"][0] == {"Name": "Server", "Value": SERVER} for d in got.values())

    now[0] += 60  # a quiet interval: counts are zero, the rates without data are left out
    quiet = {d["MetricName"]: d for d in figures()}
    assert quiet["ToolCalls"]["Value"] == 0 and quiet["TelemetryThroughput"]["Value"] == 0
    assert "CycleSuccessRate" not in quiet and "CodeGenerationLatency" not in quiet
    assert quiet["EvolutionLevel"]["Value"] == 9


async def wait_for_figure(name: str, predicate: Callable[[dict[str, float]], bool], **kw: Any) -> dict[str, float]:
    found: dict[str, float] = {}

    async def published() -> bool:
        found.clear()
        found.update(await anyio.to_thread.run_sync(lambda: statistics(name, server_name(), **kw)) or {})
        return bool(found) and predicate(found)

    await eventually(published, f"CloudWatch has {name} as expected", every=0.2)  # a busy machine is slow, not wrong
    return found


async def wait_for_log(caplog: pytest.LogCaptureFixture, text: str) -> None:
    """Wait (bounded) until a captured log record contains ``text``."""
    await eventually(lambda: any(text in r.message for r in caplog.records), f"a log record with {text!r}")


async def test_the_server_publishes_its_tool_calls_and_telemetry(aws: MotoServer, make_server: ServerFactory) -> None:
    server = make_server(enable_cloudwatch_publishing=True, cloudwatch_publish_interval_seconds=1, cloudwatch=config())
    points = [{"name": "api.latency_ms", "value": 100 + i, "timestamp": time.time() - 60 + i} for i in range(4)]
    async with connect(server) as mcp:
        for _ in range(3):
            await call(mcp, "get_system_status")
        await call(mcp, "ingest_telemetry", {"tenant_id": "default", "metrics": points})
        assert "CloudWatch streaming is off" in await call_error(mcp, "get_alarm_states", {})
        calls = await wait_for_figure("ToolCalls", lambda s: s["Sum"] == 5)
        assert calls["SampleCount"] >= 1
        assert (await wait_for_figure("ToolErrors", lambda s: s["Sum"] == 1))["Sum"] == 1
        throughput = await wait_for_figure("TelemetryThroughput", lambda s: s["Maximum"] > 0)
        assert throughput["Minimum"] >= 0
        level = await wait_for_figure("EvolutionLevel", lambda s: s["SampleCount"] >= 1)
        assert level["Maximum"] == 0
        # The server's own count (this call not yet in it) agrees with what CloudWatch received.
        assert (await call(mcp, "get_system_status"))["server"]["tool_calls"] == calls["Sum"]
        sources = await call(mcp, "get_telemetry_sources")
    publishing = sources["publishing"]
    assert publishing["namespace"] == "SelfBuildingMCP" and publishing["datums_sent"] >= 5
    assert publishing["last_error"] is None and publishing["breaker"]["state"] == "closed"


async def test_shutdown_sends_the_last_figures(aws: MotoServer, make_server: ServerFactory) -> None:
    server = make_server(enable_cloudwatch_publishing=True, cloudwatch_publish_interval_seconds=3600,
                         cloudwatch=config())  # fmt: skip
    async with connect(server) as mcp:
        await call(mcp, "get_system_status")
        await call(mcp, "get_monitoring_status")
    # Nothing went out during the hour-long interval; closing the server sent both calls.
    found = await anyio.to_thread.run_sync(lambda: statistics("ToolCalls", server_name()))
    assert found["Sum"] == 2 and found["SampleCount"] == 1


@pytest.mark.usefixtures("credentials")
async def test_dead_endpoint_neither_blocks_nor_crashes_and_is_caught_up(
    make_server: ServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"  # nothing listens yet
    cw_config = config(endpoint_url=endpoint, retry_attempts=1, breaker_failure_threshold=1,
                       breaker_cooldown_seconds=0.5)  # fmt: skip
    server = make_server(enable_cloudwatch_publishing=True, cloudwatch_publish_interval_seconds=1, cloudwatch=cw_config)
    moto = MotoServer(port)
    try:
        with caplog.at_level(logging.INFO, logger="telemetry.cloudwatch.publisher"):
            async with connect(server) as mcp:

                async def paused() -> bool:  # each call is a figure to publish
                    await call(mcp, "get_monitoring_status")
                    return any("publishing paused" in r.message for r in caplog.records)

                await eventually(paused, "publishing paused", timeout=30)
                made = (await call(mcp, "get_system_status"))["server"]["tool_calls"] + 1
                await anyio.to_thread.run_sync(moto.start)
                caught_up = await wait_for_figure("ToolCalls", lambda s: s["Sum"] >= made, endpoint=endpoint)
                assert caught_up["Sum"] == made  # the calls made while AWS was away arrived, once each
                # CloudWatch has the figures as soon as PutMetricData is answered; the publisher logs its recovery
                # only after that answer reaches it, so on a busy machine the line comes later: wait for it.
                await wait_for_log(caplog, "publishing recovered")
    finally:
        moto.stop()


def setup_json(tmp_path: Path, aws: MotoServer, *args: str) -> dict[str, Any]:
    proc = run_setup(tmp_path, aws.url, "--json", "--server", SERVER, *args)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert isinstance(data, dict)
    return data


def alarms() -> dict[str, dict[str, Any]]:
    found = client("cloudwatch").describe_alarms(AlarmNamePrefix="self-building-mcp-")["MetricAlarms"]
    return {a["AlarmName"]: a for a in found}


@pytest.mark.slow
def test_setup_dashboard_and_alarms_then_a_second_run_changes_nothing(aws: MotoServer, tmp_path: Path) -> None:
    first = setup_json(tmp_path, aws, "--dashboard", "--alarms", "--no-pipeline")
    assert first["changed"] is True and first["server"] == SERVER and first["namespace"] == NAMESPACE
    assert first["dashboard"]["action"] == "created" and "actions" not in first  # no pipeline asked for
    assert [a["action"] for a in first["alarms"]] == ["created"] * 4
    assert client("sqs").list_queues().get("QueueUrls", []) == []

    body = json.loads(client("cloudwatch").get_dashboard(DashboardName=dashboard_name(SERVER))["DashboardBody"])
    shown = {m[1] for w in body["widgets"] for m in w["properties"]["metrics"]}
    assert {
        "CycleSuccessRate",
        "CodeGenerationLatency",
        "TelemetryThroughput",
        "BreakerState",
        "EvolutionLevel",
    } <= shown
    for widget in body["widgets"]:
        for metric in widget["properties"]["metrics"]:
            assert metric[0] == NAMESPACE and metric[2:4] == ["Server", SERVER]

    made = alarms()
    fields = ("MetricName", "Statistic", "ComparisonOperator", "Threshold")
    prefix = f"self-building-mcp-{SERVER}-"
    conditions = {
        name.removeprefix(prefix): (*(a[f] for f in fields), a["Period"] * a["EvaluationPeriods"])
        for name, a in made.items()
    }
    assert conditions == {
        "cycle-success-rate": ("CycleSuccessRate", "Average", "LessThanThreshold", 70.0, 3600),
        "breaker-open": ("BreakersOpen", "Minimum", "GreaterThanOrEqualToThreshold", 1.0, 300),
        "rollback": ("Rollbacks", "Sum", "GreaterThanOrEqualToThreshold", 1.0, 60),
        "codegen-latency": ("CodeGenerationLatency", "Maximum", "GreaterThanThreshold", 60.0, 60),
    }
    assert all(a["Dimensions"] == [{"Name": "Server", "Value": SERVER}] for a in made.values())
    assert all(a["Namespace"] == NAMESPACE and a["AlarmActions"] == [] for a in made.values())

    second = setup_json(tmp_path, aws, "--dashboard", "--alarms", "--no-pipeline")
    assert second["changed"] is False and second["dashboard"]["action"] == "unchanged"
    assert [a["action"] for a in second["alarms"]] == ["unchanged"] * 4
    stamps = {n: a["AlarmConfigurationUpdatedTimestamp"] for n, a in made.items()}
    assert {n: a["AlarmConfigurationUpdatedTimestamp"] for n, a in alarms().items()} == stamps

    text = run_setup(tmp_path, aws.url, "--server", SERVER, "--dashboard", "--alarms", "--no-pipeline")
    assert text.returncode == 0, text.stderr
    assert "already set up, nothing changed" in text.stdout and "ENABLE_CLOUDWATCH_PUBLISHING=true" in text.stdout
    audit = SqliteAuditLog(tmp_path / "data" / "audit.sqlite3")
    try:
        entries = audit.query(kind="cloudwatch_setup", limit=20).entries
    finally:
        audit.close()
    assert sorted((e.subject, e.detail["changed"]) for e in entries) == sorted(
        [("dashboard", True), ("alarms", True)] + [("dashboard", False), ("alarms", False)] * 2
    )


@pytest.mark.slow
def test_edited_alarm_and_dashboard_are_put_back_and_the_pipeline_comes_along(aws: MotoServer, tmp_path: Path) -> None:
    setup_json(tmp_path, aws, "--dashboard", "--alarms", "--no-pipeline")
    cw = client("cloudwatch")
    [wanted] = [s for s in alarm_specs(NAMESPACE, SERVER, 60, None) if s["AlarmName"].endswith("-cycle-success-rate")]
    cw.put_metric_alarm(**{**wanted, "Threshold": 50.0})  # someone lowered it
    cw.put_dashboard(DashboardName=dashboard_name(SERVER), DashboardBody=json.dumps({"widgets": []}))

    topic = "arn:aws:sns:us-east-1:123456789012:ops"
    result = setup_json(tmp_path, aws, "--dashboard", "--alarms")  # the pipeline too, this time
    assert result["actions"] == {"queue": "created", "queue_policy": "created", "rule": "created", "target": "created"}
    assert result["dashboard"]["action"] == "updated" and result["changed"] is True
    actions = {a["name"]: a["action"] for a in result["alarms"]}
    assert actions[wanted["AlarmName"]] == "updated"
    assert sorted(actions.values()) == ["unchanged", "unchanged", "unchanged", "updated"]
    assert alarms()[wanted["AlarmName"]]["Threshold"] == 70.0
    assert len(json.loads(cw.get_dashboard(DashboardName=dashboard_name(SERVER))["DashboardBody"])["widgets"]) == 6

    with_topic = setup_json(tmp_path, aws, "--alarms", "--no-pipeline", "--alarm-topic", topic)
    assert [a["action"] for a in with_topic["alarms"]] == ["updated"] * 4
    assert all(a["AlarmActions"] == [topic] and a["OKActions"] == [topic] for a in alarms().values())


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "text"),
    [
        (["--no-pipeline"], "--no-pipeline needs --dashboard and/or --alarms"),
        (["--dashboard", "--alarm-topic", "arn:aws:sns:us-east-1:123456789012:ops"], "--alarm-topic needs --alarms"),
        (["--alarms", "--alarm-topic", "not-an-arn"], "expected an SNS topic ARN"),
    ],
)
def test_usage_errors(tmp_path: Path, args: list[str], text: str) -> None:
    proc = run_setup(tmp_path, None, *args)
    assert proc.returncode == 2 and text in proc.stderr and proc.stdout == ""


@pytest.mark.slow
def test_missing_permissions_are_one_line_naming_them(tmp_path: Path) -> None:
    with FaultServer(400, "AccessDenied", "User: ops is not authorized") as fault:
        proc = run_setup(tmp_path, fault.url, "--dashboard", "--no-pipeline")
    assert proc.returncode == 1 and proc.stdout == "" and "Traceback" not in proc.stderr
    [line] = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert line.startswith("self-building-mcp: error: access denied for cloudwatch:GetDashboard")
    assert "cloudwatch:PutDashboard" in line
    assert fault.requests == ["GraniteServiceVersion20100801.GetDashboard"]


def test_help_lists_the_new_flags(tmp_path: Path) -> None:
    from tests.test_cloudwatch_setup import CLI

    proc = subprocess.run([*CLI, "cloudwatch", "setup", "--help"], capture_output=True, text=True, cwd=tmp_path,
                          timeout=60)  # fmt: skip
    for flag in ("--dashboard", "--alarms", "--no-pipeline", "--alarm-topic", "--server"):
        assert flag in proc.stdout
