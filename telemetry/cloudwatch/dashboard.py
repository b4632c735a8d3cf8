"""The server's own metrics in CloudWatch: their names, and the dashboard and alarms made for them by
``self-building-mcp cloudwatch setup --dashboard --alarms``.

Both are idempotent: the dashboard body and each alarm are compared with what exists (``GetDashboard``,
``DescribeAlarms``) and written only when missing (created) or different (updated, e.g. an edited threshold is put
back); otherwise they are reported unchanged. Everything is per server: the ``Server`` dimension the server publishes
with (its host name unless told otherwise).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, Literal

from pydantic import BaseModel, Field

from telemetry.cloudwatch.aws import AwsClients
from telemetry.cloudwatch.config import CloudWatchConfig
from telemetry.cloudwatch.retry import call_with_retry
from telemetry.cloudwatch.setup import ClientFactory, explained_errors, snake_case
from telemetry.cloudwatch.streamer import SOURCES
from telemetry.errors import SetupError

# What the server publishes (server/cloudwatch_publishing.py), all with the Server dimension.
CYCLE_SUCCESS_RATE = "CycleSuccessRate"  # percent of improvement cycles that ended completed (statistic sets)
CODEGEN_LATENCY = "CodeGenerationLatency"  # seconds per answered LLM request (statistic sets: Average, Maximum)
TELEMETRY_THROUGHPUT = "TelemetryThroughput"  # telemetry items stored per second
BREAKER_STATE = "BreakerState"  # per Source: 0 closed, 1 half open, 2 open
BREAKERS_OPEN = "BreakersOpen"  # CloudWatch sources whose breaker is not closed (open, or half open: failing)
EVOLUTION_LEVEL = "EvolutionLevel"  # deployed improvements kept, all time
ROLLBACKS = "Rollbacks"  # improvements rolled back in the interval
TOOL_CALLS = "ToolCalls"
TOOL_ERRORS = "ToolErrors"
SERVER_DIMENSION, SOURCE_DIMENSION = "Server", "Source"

SUCCESS_RATE_THRESHOLD = 70.0
BREAKER_OPEN_SECONDS = 300
CODEGEN_LATENCY_THRESHOLD = 60.0
SUCCESS_RATE_PERIOD = 3600
NAME_PREFIX = "self-building-mcp-"
DASHBOARD_PERMISSIONS = ("cloudwatch:GetDashboard", "cloudwatch:PutDashboard")
ALARM_PERMISSIONS = ("cloudwatch:DescribeAlarms", "cloudwatch:PutMetricAlarm")
TOPIC_ARN = re.compile(r"^arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}$")
# Compared with DescribeAlarms: every field this module sets.
_ALARM_FIELDS = (
    "AlarmDescription", "ActionsEnabled", "AlarmActions", "OKActions", "InsufficientDataActions", "Namespace",
    "MetricName", "Dimensions", "Statistic", "Period", "EvaluationPeriods", "DatapointsToAlarm", "Threshold",
    "ComparisonOperator", "TreatMissingData",
)  # fmt: skip

Action = Literal["created", "updated", "unchanged"]


class DashboardResult(BaseModel):
    name: str = Field(description="Dashboard name.")
    action: Action = Field(description="What this run did to it.")
    widgets: int = Field(description="Widgets on it.")


class AlarmResult(BaseModel):
    name: str = Field(description="Alarm name.")
    action: Action = Field(description="What this run did to it.")
    condition: str = Field(description="When it fires, in words.")


def dashboard_name(server: str) -> str:
    """Dashboard names allow letters, digits, '-' and '_' only."""
    return (NAME_PREFIX + re.sub(r"[^A-Za-z0-9_-]", "-", server))[:255]


def alarm_period(interval_seconds: float) -> int:
    """The alarms' period: the publish interval rounded up to whole minutes (AWS takes 10, 30 or n x 60 s)."""
    return max(60, math.ceil(interval_seconds / 60) * 60)


def _metric(namespace: str, name: str, server: str, **options: Any) -> list[Any]:
    return [namespace, name, SERVER_DIMENSION, server, *([options] if options else [])]


def _widget(index: int, title: str, metrics: list[list[Any]], region: str, period: int, **extra: Any) -> dict[str, Any]:
    properties = {"title": title, "region": region, "view": "timeSeries", "period": period, "metrics": metrics}
    return {"type": "metric", "x": 12 * (index % 2), "y": 6 * (index // 2), "width": 12, "height": 6,
            "properties": {**properties, **extra}}  # fmt: skip


def dashboard_body(namespace: str, server: str, region: str, period: int) -> dict[str, Any]:
    """Cycle success rate, code-generation latency, telemetry throughput, breaker state, evolution level, and the
    tool calls with their errors and the rollbacks."""
    ns = namespace
    breakers = [
        [ns, BREAKER_STATE, SERVER_DIMENSION, server, SOURCE_DIMENSION, source, {"stat": "Maximum", "label": source}]
        for source in SOURCES
    ]
    widgets = [
        _widget(0, "Improvement cycle success rate (%)",
                [_metric(ns, CYCLE_SUCCESS_RATE, server, stat="Average")], region, SUCCESS_RATE_PERIOD,
                yAxis={"left": {"min": 0, "max": 100}},
                annotations={"horizontal": [{"label": "alarm", "value": SUCCESS_RATE_THRESHOLD}]}),
        _widget(1, "Code-generation latency (s per LLM request)",
                [_metric(ns, CODEGEN_LATENCY, server, stat="Average", label="average"),
                 _metric(ns, CODEGEN_LATENCY, server, stat="Maximum", label="maximum")], region, period,
                annotations={"horizontal": [{"label": "alarm", "value": CODEGEN_LATENCY_THRESHOLD}]}),
        _widget(2, "Telemetry throughput (items/s)",
                [_metric(ns, TELEMETRY_THROUGHPUT, server, stat="Average")], region, period),
        _widget(3, "CloudWatch breaker state (0 closed, 1 half open, 2 open)",
                [*breakers, _metric(ns, BREAKERS_OPEN, server, stat="Maximum", label="not closed")], region, period,
                yAxis={"left": {"min": 0, "max": 4}}),
        _widget(4, "Evolution level (improvements kept)",
                [_metric(ns, EVOLUTION_LEVEL, server, stat="Maximum")], region, period),
        _widget(5, "Tool calls, tool errors, rollbacks",
                [_metric(ns, name, server, stat="Sum") for name in (TOOL_CALLS, TOOL_ERRORS, ROLLBACKS)],
                region, period),
    ]  # fmt: skip
    return {"widgets": widgets}


def alarm_specs(namespace: str, server: str, period: int, topic_arn: str | None) -> list[dict[str, Any]]:
    """PutMetricAlarm arguments of the four alarms. No data is not breaching (a quiet server is fine)."""
    actions = [topic_arn] if topic_arn else []
    base = {
        "ActionsEnabled": True, "AlarmActions": actions, "OKActions": actions, "InsufficientDataActions": [],
        "Namespace": namespace, "Dimensions": [{"Name": SERVER_DIMENSION, "Value": server}],
        "TreatMissingData": "notBreaching",
    }  # fmt: skip
    breaker_periods = max(1, math.ceil(BREAKER_OPEN_SECONDS / period))

    def spec(suffix: str, metric: str, statistic: str, op: str, threshold: float, what: str, **kw: Any) -> Any:
        fields = {"Period": period, "EvaluationPeriods": 1, **kw}
        fields["DatapointsToAlarm"] = fields["EvaluationPeriods"]  # every period of the window breaches
        return {**base, "AlarmName": f"{NAME_PREFIX}{server}-{suffix}", "MetricName": metric, "Statistic": statistic,
                "ComparisonOperator": op, "Threshold": threshold,
                "AlarmDescription": f"self-building-mcp on {server}: {what}", **fields}  # fmt: skip

    return [
        spec("cycle-success-rate", CYCLE_SUCCESS_RATE, "Average", "LessThanThreshold", SUCCESS_RATE_THRESHOLD,
             f"fewer than {SUCCESS_RATE_THRESHOLD:g}% of the improvement cycles ending in an hour completed",
             Period=max(period, SUCCESS_RATE_PERIOD)),
        spec("breaker-open", BREAKERS_OPEN, "Minimum", "GreaterThanOrEqualToThreshold", 1.0,
             f"a CloudWatch source's breaker was not closed for {BREAKER_OPEN_SECONDS // 60} minutes",
             EvaluationPeriods=breaker_periods),
        spec("rollback", ROLLBACKS, "Sum", "GreaterThanOrEqualToThreshold", 1.0,
             "an improvement was rolled back"),
        spec("codegen-latency", CODEGEN_LATENCY, "Maximum", "GreaterThanThreshold", CODEGEN_LATENCY_THRESHOLD,
             f"a code-generation request to the LLM took over {CODEGEN_LATENCY_THRESHOLD:g} s"),
    ]  # fmt: skip


def describe_alarm(spec: dict[str, Any]) -> str:
    ops = {"LessThanThreshold": "<", "GreaterThanThreshold": ">", "GreaterThanOrEqualToThreshold": ">="}
    minutes = spec["Period"] * spec["EvaluationPeriods"] // 60
    return (f"{spec['MetricName']} {spec['Statistic']} {ops[spec['ComparisonOperator']]} {spec['Threshold']:g} "
            f"over {minutes} min")  # fmt: skip


class _CloudWatch:
    def __init__(self, config: CloudWatchConfig, factory: ClientFactory) -> None:
        self._config, self._factory = config, factory

    def call(self, operation: str, permissions: tuple[str, ...], **kwargs: Any) -> Any:
        with explained_errors("cloudwatch", operation, self._config, permissions):
            method = getattr(self._factory("cloudwatch"), snake_case(operation))
            return call_with_retry(
                lambda: method(**kwargs),
                attempts=self._config.retry_attempts,
                initial=self._config.retry_initial_seconds,
            )


def ensure_dashboard(
    config: CloudWatchConfig, namespace: str, server: str, period: int, *, client_factory: ClientFactory | None = None
) -> DashboardResult:
    """Create the dashboard, or put it back as it should be; blocking. Raises SetupError saying what to fix."""
    cw = _CloudWatch(config, client_factory or AwsClients(config).client)
    name, body = dashboard_name(server), dashboard_body(namespace, server, config.region, period)
    try:
        found = cw.call("GetDashboard", DASHBOARD_PERMISSIONS, DashboardName=name)
    except SetupError as exc:
        if exc.code not in ("ResourceNotFound", "ResourceNotFoundException"):
            raise
        found = None
    current = _json(found.get("DashboardBody")) if found is not None else None
    if current == body:
        return DashboardResult(name=name, action="unchanged", widgets=len(body["widgets"]))
    response = cw.call("PutDashboard", DASHBOARD_PERMISSIONS, DashboardName=name, DashboardBody=json.dumps(body))
    problems = response.get("DashboardValidationMessages") or []
    if problems:
        raise SetupError(f"CloudWatch found problems in dashboard {name}: {problems[0].get('Message')}")
    return DashboardResult(name=name, action="created" if found is None else "updated", widgets=len(body["widgets"]))


def ensure_alarms(
    config: CloudWatchConfig,
    namespace: str,
    server: str,
    period: int,
    *,
    topic_arn: str | None = None,
    client_factory: ClientFactory | None = None,
) -> list[AlarmResult]:
    """Create the four alarms, or put them back as they should be; blocking. Raises SetupError saying what to fix."""
    cw = _CloudWatch(config, client_factory or AwsClients(config).client)
    specs = alarm_specs(namespace, server, period, topic_arn)
    response = cw.call("DescribeAlarms", ALARM_PERMISSIONS, AlarmNames=[s["AlarmName"] for s in specs],
                       AlarmTypes=["MetricAlarm"])  # fmt: skip
    existing = {alarm["AlarmName"]: alarm for alarm in response.get("MetricAlarms", [])}
    results = []
    for spec in specs:
        found = existing.get(spec["AlarmName"])
        action: Action = "created" if found is None else "unchanged" if _same_alarm(found, spec) else "updated"
        if action != "unchanged":
            cw.call("PutMetricAlarm", ALARM_PERMISSIONS, **spec)
        results.append(AlarmResult(name=spec["AlarmName"], action=action, condition=describe_alarm(spec)))
    return results


def _same_alarm(found: dict[str, Any], spec: dict[str, Any]) -> bool:
    def norm(key: str, value: Any) -> Any:
        if key == "Dimensions":
            return sorted((d.get("Name"), d.get("Value")) for d in value or [])
        if key == "Threshold":
            return float(value) if value is not None else None
        if key.endswith("Actions"):
            return sorted(value or [])
        return value

    return all(norm(key, found.get(key)) == norm(key, spec[key]) for key in _ALARM_FIELDS)


def _json(text: Any) -> Any:
    try:
        return json.loads(text) if isinstance(text, str) else None
    except ValueError:
        return None
