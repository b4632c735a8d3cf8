"""``get_alarm_states`` against moto in server mode, through the MCP client: EventBridge state changes apply at once
and the newest state of each alarm wins; during an outage the last known states answer at once, with their age and
the breaker; only actual DescribeAlarms calls are audited."""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import anyio
import pytest
from mcp import Client

from telemetry.cloudwatch.config import CloudWatchConfig
from tests.conftest import ServerFactory, call, call_error, connect
from tests.moto_server import FaultProxy, FaultServer, MotoServer, client
from tests.polling import async_check, eventually

pytestmark = pytest.mark.anyio

ALARM = "shop-HighLatency"
DESCRIBE = "DescribeAlarms"


def put_alarm(name: str = ALARM) -> None:
    client("cloudwatch").put_metric_alarm(
        AlarmName=name, MetricName="Latency", Namespace="Shop", Statistic="Average", Period=60,
        EvaluationPeriods=1, Threshold=100, ComparisonOperator="GreaterThanThreshold",
        Dimensions=[{"Name": "Component", "Value": "checkout"}, {"Name": "TenantId", "Value": "acme"}],
    )  # fmt: skip


def iso(stamp: float) -> str:
    """An EventBridge state timestamp: ``2026-11-25T10:00:00.123+0000``."""
    return datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "+0000"


def state_change(event_id: str, state: str, previous: str, at: float) -> str:
    """A "CloudWatch Alarm State Change" event as EventBridge puts it on the queue (no TenantId: the alarm's own
    dimensions stay as DescribeAlarms told them)."""
    return json.dumps(
        {
            "version": "0",
            "id": event_id,
            "detail-type": "CloudWatch Alarm State Change",
            "source": "aws.cloudwatch",
            "account": "123456789012",
            "time": datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "region": "us-east-1",
            "resources": [f"arn:aws:cloudwatch:us-east-1:123456789012:alarm:{ALARM}"],
            "detail": {
                "alarmName": ALARM,
                "state": {"value": state, "reason": f"test: {state}", "timestamp": iso(at)},
                "previousState": {"value": previous, "reason": "before", "timestamp": iso(at - 60)},
                "configuration": {
                    "metrics": [
                        {
                            "id": "m1",
                            "metricStat": {
                                "metric": {"namespace": "Shop", "name": "Latency", "dimensions": {}},
                                "period": 60,
                                "stat": "Average",
                            },
                            "returnData": True,
                        }
                    ]
                },
            },
        }
    )


def settings_for(**overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "alarm_name_prefix": "shop-",
        "sqs_wait_seconds": 0,
        "retry_attempts": 3,
        "retry_initial_seconds": 0.01,
        **overrides,
    }
    return {"enable_cloudwatch_streaming": True, "cloudwatch": CloudWatchConfig.model_validate(values)}


async def states_until(mcp: Client, done: Callable[[dict[str, Any]], bool], timeout: float = 30) -> dict[str, Any]:
    """``get_alarm_states`` until its answer satisfies ``done`` (bounded)."""
    answer: dict[str, Any] = {}

    async def holds() -> bool:
        answer.update(await call(mcp, "get_alarm_states"))
        return done(answer)

    await eventually(holds, "get_alarm_states answered what the test waits for", timeout)
    return answer


async def source(mcp: Client, name: str) -> dict[str, Any]:
    return {s["name"]: s for s in (await call(mcp, "get_telemetry_sources"))["sources"]}[name]


def breaker_open(mcp: Client) -> Callable[[], Awaitable[bool]]:
    return async_check(lambda: source(mcp, "cloudwatch.alarms"), lambda s: s["breaker"]["state"] == "open")


async def access_rows(mcp: Client) -> list[dict[str, Any]]:
    return list((await call(mcp, "query_audit_log", {"kind": "cloudwatch_access", "limit": 500}))["entries"])


def only(answer: dict[str, Any]) -> dict[str, Any]:
    [alarm] = answer["alarms"]
    return alarm


async def test_an_eventbridge_change_shows_at_once_and_the_newest_state_wins(
    aws: MotoServer, make_server: ServerFactory
) -> None:
    put_alarm()
    sqs = client("sqs")
    url = sqs.create_queue(QueueName="alarm-events")["QueueUrl"]
    # No cache: every call asks DescribeAlarms, which keeps saying OK (moto's alarm never changed by itself).
    async with connect(make_server(**settings_for(sqs_queue_url=url, alarm_cache_seconds=0))) as mcp:
        first = only(await call(mcp, "get_alarm_states"))
        assert (first["state"], first["source"], first["tenant"]) == ("OK", "DescribeAlarms", "acme")

        raised_at = time.time()
        sqs.send_message(QueueUrl=url, MessageBody=state_change("e-alarm", "ALARM", "OK", raised_at))
        alarmed = only(await states_until(mcp, lambda a: only(a)["state"] == "ALARM"))
        assert alarmed["source"] == "EventBridge" and alarmed["reason"] == "test: ALARM"
        assert alarmed["updated_at"] == pytest.approx(raised_at, abs=0.001)
        # What the event does not say (tenant, component) stays as DescribeAlarms told it.
        assert (alarmed["tenant"], alarmed["component"], alarmed["metric"]) == ("acme", "checkout", "Latency")
        # DescribeAlarms still answers OK, but its state is older than the event's: the event's stands.
        again = await call(mcp, "get_alarm_states", {"state": "ALARM"})
        assert [a["name"] for a in again["alarms"]] == [ALARM] and again["stale"] is False

        # An event older than the state known changes nothing (here: an OK from before the ALARM).
        ingested = (await source(mcp, "cloudwatch.events"))["items_ingested"]
        sqs.send_message(QueueUrl=url, MessageBody=state_change("e-late", "OK", "ALARM", raised_at - 30))
        await eventually(
            async_check(lambda: source(mcp, "cloudwatch.events"), lambda s: s["items_ingested"] > ingested),
            "the late event was read from the queue",
            timeout=30,
        )
        assert only(await call(mcp, "get_alarm_states"))["state"] == "ALARM"

        # A newer state from DescribeAlarms wins over the event.
        client("cloudwatch").set_alarm_state(AlarmName=ALARM, StateValue="OK", StateReason="test: recovered")
        recovered = only(await states_until(mcp, lambda a: only(a)["state"] == "OK"))
        assert recovered["source"] == "DescribeAlarms" and recovered["reason"] == "test: recovered"
        # An alarm deleted in CloudWatch leaves the table with the next DescribeAlarms.
        client("cloudwatch").delete_alarms(AlarmNames=[ALARM])
        assert (await call(mcp, "get_alarm_states"))["alarms"] == []


async def test_during_an_outage_the_last_known_states_answer_at_once(
    aws: MotoServer, make_server: ServerFactory
) -> None:
    """A proxy in front of moto starts failing: each call then sends at most one DescribeAlarms (no retries while
    states are known), none once the breaker is open, and answers the last known states with their age."""
    put_alarm()
    url = client("sqs").create_queue(QueueName="alarm-events")["QueueUrl"]
    with FaultProxy(aws.url) as proxy:
        overrides = settings_for(
            endpoint_url=proxy.url, sqs_queue_url=url, alarm_cache_seconds=0,
            breaker_failure_threshold=2, breaker_cooldown_seconds=600,
        )  # fmt: skip
        async with connect(make_server(**overrides)) as mcp:
            known = await call(mcp, "get_alarm_states")
            assert only(known)["state"] == "OK" and known["stale"] is False and known["last_error"] is None
            assert known["breaker"]["state"] == "closed"

            proxy.fail(503, "ServiceUnavailableException", "CloudWatch is down")
            before = proxy.count(DESCRIBE)
            answers = [await call(mcp, "get_alarm_states") for _ in range(5)]
            # One try for each of the two calls that opened the breaker; none after.
            assert proxy.count(DESCRIBE) - before == 2
            for answer in answers:
                assert only(answer)["state"] == "OK" and only(answer)["age_seconds"] >= 0
                assert answer["stale"] is True
                assert answer["last_error"] == "ServiceUnavailableException: CloudWatch is down"
            assert [a["breaker"]["state"] for a in answers] == ["closed", "open", "open", "open", "open"]
            assert answers[-1]["breaker"]["retry_at"] is not None
            ages = [only(a)["age_seconds"] for a in answers]
            assert ages == sorted(ages)  # nothing confirmed the state since: it only ages
            health = await source(mcp, "cloudwatch.alarms")
            assert health["enabled"] is True and health["failures"] == 2 and health["breaker"]["state"] == "open"
            # The audit log holds one row per DescribeAlarms sent: the first call and the two failed tries.
            rows = await access_rows(mcp)
            assert len(rows) == 3
            assert [r["detail"]["error"] for r in rows] == ["ServiceUnavailableException: CloudWatch is down"] * 2 + [
                None
            ]


async def test_moto_stopped_the_last_known_states_answer(aws: MotoServer, make_server: ServerFactory) -> None:
    """The operator's outage: no queue (the alarms are polled), the endpoint stops answering."""
    put_alarm()
    overrides = settings_for(
        alarm_cache_seconds=0, poll_interval_seconds=0.1, breaker_failure_threshold=2, breaker_cooldown_seconds=600
    )
    async with connect(make_server(**overrides)) as mcp:
        assert only(await call(mcp, "get_alarm_states"))["state"] == "OK"
        aws.stop()
        try:
            await eventually(breaker_open(mcp), "the alarms' breaker opened", timeout=30)
            for _ in range(3):
                answer = await call(mcp, "get_alarm_states")
                assert only(answer)["state"] == "OK" and answer["stale"] is True
                assert answer["breaker"]["state"] == "open" and "EndpointConnectionError" in answer["last_error"]
        finally:
            aws.start()


async def test_an_error_only_when_no_state_was_ever_known(make_server: ServerFactory) -> None:
    with FaultServer(503, "ServiceUnavailableException", "CloudWatch is down") as fault:
        overrides = settings_for(
            endpoint_url=fault.url, retry_initial_seconds=0.001, breaker_failure_threshold=1,
            breaker_cooldown_seconds=600, poll_interval_seconds=3600,
        )  # fmt: skip
        async with connect(make_server(**overrides)) as mcp:
            await eventually(breaker_open(mcp), "the alarms' breaker opened", timeout=30)
            sent = fault.count
            error = await call_error(mcp, "get_alarm_states", {})
            assert fault.count == sent  # the breaker is open: nothing sent
    assert "could not read CloudWatch alarms (ServiceUnavailableException: CloudWatch is down)" in error
    assert "no alarm state is known yet" in error and "cloudwatch:DescribeAlarms" in error
    assert "the breaker is open: the next try is in" in error


async def test_reads_from_the_state_table_are_not_audited(aws: MotoServer, make_server: ServerFactory) -> None:
    put_alarm()
    url = client("sqs").create_queue(QueueName="alarm-events")["QueueUrl"]
    async with connect(make_server(**settings_for(sqs_queue_url=url, alarm_cache_seconds=3600))) as mcp:
        answers: list[dict[str, Any]] = []

        async def read() -> None:
            answers.append(await call(mcp, "get_alarm_states"))

        async with anyio.create_task_group() as group:  # concurrent callers share one DescribeAlarms
            for _ in range(5):
                group.start_soon(read)
        answers += [await call(mcp, "get_alarm_states") for _ in range(20)]
        assert all(only(a)["state"] == "OK" for a in answers)
        rows = await access_rows(mcp)
    assert len(rows) == 1 and rows[0]["detail"]["api"] == DESCRIBE


async def test_polled_alarms_are_not_audited_per_read(aws: MotoServer, make_server: ServerFactory) -> None:
    """Without a queue the alarms are polled: once a poll has read them, calls within the cache time send nothing."""
    put_alarm()
    overrides = settings_for(alarm_cache_seconds=3600, poll_interval_seconds=3600)
    async with connect(make_server(**overrides)) as mcp:
        await eventually(
            async_check(lambda: source(mcp, "cloudwatch.alarms"), lambda s: s["last_success"] is not None),
            "a poll read the alarms",
            timeout=30,
        )
        for _ in range(10):
            assert only(await call(mcp, "get_alarm_states"))["source"] == "DescribeAlarms"
        assert await access_rows(mcp) == []
        started = await call(mcp, "query_audit_log", {"kind": "cloudwatch_stream_started"})
        assert len(started["entries"]) == 1  # streaming's start is still recorded
