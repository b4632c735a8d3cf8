"""``self-building-mcp cloudwatch setup``: run as a real subprocess against moto in server mode. It creates the
queue, its policy, the EventBridge rule and target; a second run changes nothing; alarm state change events go
through the rule to the queue and from there into the store; AWS trouble is one clear line and exit code 1.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

from generators.deploy import SqliteAuditLog
from telemetry.cloudwatch.config import CloudWatchConfig
from telemetry.cloudwatch.setup import DEFAULT_QUEUE_NAME, DEFAULT_RULE_NAME, REQUIRED_PERMISSIONS
from telemetry.cloudwatch.streamer import CloudWatchStreamer
from telemetry.store.sqlite_store import SqliteTelemetryStore
from tests.moto_server import CREDENTIALS, FaultServer, MotoServer, client, free_port

CLI = [sys.executable, "-m", "server"]
COMMAND = [*CLI, "cloudwatch", "setup"]
ALARM_PATTERN = {"source": ["aws.cloudwatch"], "detail-type": ["CloudWatch Alarm State Change"]}


def setup(
    tmp_path: Path, endpoint: str | None, *args: str, credentials: bool = True, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the command with nothing from the developer's AWS or SELF_BUILDING_ environment."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("SELF_BUILDING_", "AWS_"))}
    environ.update(
        SELF_BUILDING_DATA_DIR=str(tmp_path / "data"),
        AWS_CONFIG_FILE=str(tmp_path / "no-aws-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "no-aws-credentials"),
        AWS_EC2_METADATA_DISABLED="true",
        **(CREDENTIALS if credentials else {}),
        **({"AWS_ENDPOINT_URL": endpoint} if endpoint else {}),
        **(env or {}),
    )
    return subprocess.run([*COMMAND, *args], capture_output=True, text=True, env=environ, cwd=tmp_path, timeout=120)


def setup_json(tmp_path: Path, aws: MotoServer, *args: str) -> dict[str, Any]:
    proc = setup(tmp_path, aws.url, "--json", *args)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert isinstance(data, dict)
    return data


def alarm_detail(alarm: str, state: str, previous: str, tenant: str) -> str:
    metric = {"metricStat": {"metric": {"namespace": "Shop", "name": "Latency", "dimensions": {"TenantId": tenant}}}}
    return json.dumps(
        {
            "alarmName": alarm,
            "state": {"value": state, "reason": "threshold crossed"},
            "previousState": {"value": previous},
            "configuration": {"metrics": [metric]},
        }
    )


@pytest.mark.slow
def test_setup_creates_the_pipeline_and_a_second_run_changes_nothing(aws: MotoServer, tmp_path: Path) -> None:
    first = setup_json(tmp_path, aws)
    assert first["actions"] == {"queue": "created", "queue_policy": "created", "rule": "created", "target": "created"}
    assert first["changed"] is True and first["event_pattern"] == ALARM_PATTERN

    sqs, events = client("sqs"), client("events")
    url = sqs.get_queue_url(QueueName=DEFAULT_QUEUE_NAME)["QueueUrl"]
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn", "Policy"])["Attributes"]
    assert (first["queue_url"], first["queue_arn"]) == (url, attributes["QueueArn"])
    [statement] = json.loads(attributes["Policy"])["Statement"]
    assert statement["Effect"] == "Allow" and statement["Principal"] == {"Service": "events.amazonaws.com"}
    assert statement["Action"] == "sqs:SendMessage" and statement["Resource"] == first["queue_arn"]
    assert statement["Condition"] == {"ArnEquals": {"aws:SourceArn": first["rule_arn"]}}
    rule = events.describe_rule(Name=DEFAULT_RULE_NAME)
    assert rule["Arn"] == first["rule_arn"] and rule["State"] == "ENABLED"
    assert json.loads(rule["EventPattern"]) == ALARM_PATTERN
    [target] = events.list_targets_by_rule(Rule=DEFAULT_RULE_NAME)["Targets"]
    assert target["Arn"] == first["queue_arn"]

    second = setup_json(tmp_path, aws)
    assert set(second["actions"].values()) == {"unchanged"} and second["changed"] is False
    assert {k: second[k] for k in ("queue_url", "queue_arn", "rule_arn")} == {
        k: first[k] for k in ("queue_url", "queue_arn", "rule_arn")
    }
    assert len(events.list_targets_by_rule(Rule=DEFAULT_RULE_NAME)["Targets"]) == 1
    policy = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["Policy"])["Attributes"]["Policy"]
    assert json.loads(policy)["Statement"] == [statement]

    summary = setup(tmp_path, aws.url)
    assert summary.returncode == 0, summary.stderr
    assert "already set up, nothing changed" in summary.stdout
    assert f"SELF_BUILDING_CLOUDWATCH__SQS_QUEUE_URL={url}\n" in summary.stdout
    configured = setup(tmp_path, aws.url, env={"SELF_BUILDING_CLOUDWATCH__SQS_QUEUE_URL": url})
    assert "already points at this queue" in configured.stdout and "SQS_QUEUE_URL=" not in configured.stdout

    audit = SqliteAuditLog(tmp_path / "data" / "audit.sqlite3")
    try:
        entries = audit.query(kind="cloudwatch_setup", limit=10).entries
    finally:
        audit.close()
    assert len(entries) == 4 and {e.actor for e in entries} == {"cli"}
    assert [e.detail["changed"] for e in reversed(entries)] == [True, False, False, False]
    assert entries[-1].detail["actions"] == first["actions"]


@pytest.mark.slow
def test_narrowed_rule_delivers_followed_alarm_changes_to_the_queue_and_the_streamer(
    aws: MotoServer, tmp_path: Path
) -> None:
    config = tmp_path / "sb.toml"
    config.write_text(
        '[self_building.cloudwatch]\nalarm_names = ["db-cpu"]\nalarm_name_prefix = "app-"\n', encoding="utf-8"
    )
    names = ("--queue-name", "alarms", "--rule-name", "alarm-changes")
    result = setup_json(tmp_path, aws, "--config", str(config), *names)
    assert result["event_pattern"] == {**ALARM_PATTERN, "detail": {"alarmName": ["db-cpu", {"prefix": "app-"}]}}

    events = client("events")
    for alarm, source in (
        ("app-latency", "aws.cloudwatch"),
        ("db-cpu", "aws.cloudwatch"),
        ("other", "aws.cloudwatch"),
        ("app-latency", "aws.ec2"),
    ):
        entry = {
            "Source": source,
            "DetailType": "CloudWatch Alarm State Change",
            "Detail": alarm_detail(alarm, "ALARM", "OK", tenant="acme"),
        }
        assert events.put_events(Entries=[entry])["FailedEntryCount"] == 0
    store = SqliteTelemetryStore(tmp_path / "t.db")
    try:
        streamer = CloudWatchStreamer(
            CloudWatchConfig(sqs_queue_url=result["queue_url"], sqs_wait_seconds=0, retry_initial_seconds=0.01), store
        )
        stored = sum(anyio.run(streamer.poll, "cloudwatch.events") for _ in range(3))
        assert stored == 2
        changes = store.events("acme", type="alarm_state_change")
        assert sorted(e.detail["alarm"] for e in changes) == ["app-latency", "db-cpu"]
        assert {(e.detail["previous_state"], e.detail["state"]) for e in changes} == {("OK", "ALARM")}
    finally:
        store.close()

    # Following every alarm now: only the rule's pattern changes.
    widened = setup_json(tmp_path, aws, *names)
    assert widened["actions"] == {
        "queue": "unchanged",
        "queue_policy": "unchanged",
        "rule": "updated",
        "target": "unchanged",
    }
    assert json.loads(events.describe_rule(Name="alarm-changes")["EventPattern"]) == ALARM_PATTERN


@pytest.mark.slow
def test_unreachable_endpoint_is_one_clear_line_and_exit_1(tmp_path: Path) -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"
    proc = setup(
        tmp_path,
        endpoint,
        env={
            "SELF_BUILDING_CLOUDWATCH__RETRY_ATTEMPTS": "2",
            "SELF_BUILDING_CLOUDWATCH__RETRY_INITIAL_SECONDS": "0.01",
        },
    )
    assert proc.returncode == 1 and proc.stdout == ""
    [error] = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert error.startswith(f"self-building-mcp: error: cannot reach sqs at {endpoint}")
    assert "AWS_ENDPOINT_URL" in error and "Traceback" not in proc.stderr


@pytest.mark.slow
@pytest.mark.parametrize(
    ("credentials", "env", "message"),
    [
        (False, {}, "no usable AWS credentials; set AWS_PROFILE"),
        (False, {"SELF_BUILDING_CLOUDWATCH__PROFILE": "nope"}, "AWS profile 'nope' does not exist"),
        (True, {}, "access denied for sqs:GetQueueUrl (User: test is not authorized)"),
    ],
)
def test_credentials_and_permission_problems_say_what_to_fix(
    tmp_path: Path, credentials: bool, env: dict[str, str], message: str
) -> None:
    with FaultServer(400, "AccessDenied", "User: test is not authorized") as fault:
        proc = setup(tmp_path, fault.url, credentials=credentials, env=env)
    assert proc.returncode == 1 and proc.stdout == ""
    assert f"self-building-mcp: error: {message}" in proc.stderr and "Traceback" not in proc.stderr
    if credentials:
        assert fault.requests == ["AmazonSQS.GetQueueUrl"]  # not retried
        assert all(permission in proc.stderr for permission in REQUIRED_PERMISSIONS)
    else:
        assert fault.requests == []


@pytest.mark.parametrize(
    ("args", "code", "text"),
    [
        (["cloudwatch", "setup", "--help"], 0, "usage: self-building-mcp cloudwatch setup"),
        (["cloudwatch", "--help"], 0, "usage: self-building-mcp cloudwatch"),
        (["cloudwatch"], 2, "the following arguments are required: COMMAND"),
        (["cloudwatch", "setup", "--queue-name", "no spaces"], 2, "queue name must be 1-80 letters"),
        (["cloudwatch", "setup", "--rule-name", "x" * 65], 2, "rule name must be 1-64 letters"),
    ],
)
def test_help_and_usage_errors(tmp_path: Path, args: list[str], code: int, text: str) -> None:
    proc = subprocess.run([*CLI, *args], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert proc.returncode == code
    assert text in (proc.stdout if code == 0 else proc.stderr)
    if args[-2:] == ["setup", "--help"]:
        for flag in ("--queue-name", "--rule-name", "--json", "--config", "--data-dir"):
            assert flag in proc.stdout


def test_existing_queue_policy_is_kept_and_a_stale_target_is_corrected(aws: MotoServer) -> None:
    from telemetry.cloudwatch.setup import TARGET_ID, ensure_alarm_event_pipeline

    sqs, events = client("sqs"), client("events")
    url = sqs.create_queue(QueueName=DEFAULT_QUEUE_NAME)["QueueUrl"]
    theirs = {"Sid": "Theirs", "Effect": "Allow", "Principal": {"Service": "sns.amazonaws.com"}, "Action": "sqs:*"}
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"Policy": json.dumps({"Statement": [theirs]})})
    other = sqs.create_queue(QueueName="elsewhere")["QueueUrl"]
    other_arn = sqs.get_queue_attributes(QueueUrl=other, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name=DEFAULT_RULE_NAME, EventPattern=json.dumps({"source": ["aws.ec2"]}), State="DISABLED")
    events.put_targets(Rule=DEFAULT_RULE_NAME, Targets=[{"Id": TARGET_ID, "Arn": other_arn}])

    result = ensure_alarm_event_pipeline(CloudWatchConfig(retry_initial_seconds=0.01))
    assert result.actions == {"queue": "unchanged", "queue_policy": "created", "rule": "updated", "target": "updated"}
    policy = json.loads(sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["Policy"])["Attributes"]["Policy"])
    assert [s.get("Sid") for s in policy["Statement"]] == ["Theirs", "EventBridgeRuleselfbuildingmcpalarmstate"]
    [target] = events.list_targets_by_rule(Rule=DEFAULT_RULE_NAME)["Targets"]
    assert target == {"Id": TARGET_ID, "Arn": result.queue_arn}
    assert events.describe_rule(Name=DEFAULT_RULE_NAME)["State"] == "ENABLED"
    assert not ensure_alarm_event_pipeline(CloudWatchConfig()).changed
