"""One-off setup of the alarm event pipeline: CloudWatch alarm state change → EventBridge rule → SQS queue.

``ensure_alarm_event_pipeline`` is idempotent: it finds what exists, creates what is missing, corrects what
differs, and reports which of the four resources (queue, queue policy, rule, target) it created, updated or
found unchanged. The queue it reports is what ``cloudwatch.sqs_queue_url`` should be set to.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Literal

from pydantic import BaseModel, Field, computed_field

from telemetry.cloudwatch.aws import AwsClients
from telemetry.cloudwatch.config import CloudWatchConfig
from telemetry.cloudwatch.retry import call_with_retry
from telemetry.errors import SetupError

DEFAULT_QUEUE_NAME = "self-building-mcp-alarm-events"
DEFAULT_RULE_NAME = "self-building-mcp-alarm-state"
TARGET_ID = "self-building-mcp-queue"
RULE_DESCRIPTION = "CloudWatch alarm state changes for self-building-mcp (made by `self-building-mcp cloudwatch setup`)"
REQUIRED_PERMISSIONS = (
    "sqs:GetQueueUrl",
    "sqs:CreateQueue",
    "sqs:GetQueueAttributes",
    "sqs:SetQueueAttributes",
    "events:DescribeRule",
    "events:PutRule",
    "events:ListTargetsByRule",
    "events:PutTargets",
)
QUEUE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,80}$")
RULE_NAME = re.compile(r"^[A-Za-z0-9._-]{1,64}$")

_MISSING_QUEUE = frozenset({"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"})
_ACCESS_DENIED = frozenset({"AccessDenied", "AccessDeniedException", "AuthorizationError", "UnauthorizedOperation"})
_BAD_CREDENTIALS = frozenset(
    {
        "InvalidClientTokenId",
        "UnrecognizedClientException",
        "InvalidAccessKeyId",
        "ExpiredToken",
        "ExpiredTokenException",
        "InvalidSignatureException",
        "SignatureDoesNotMatch",
    }
)

Resource = Literal["queue", "queue_policy", "rule", "target"]
Action = Literal["created", "updated", "unchanged"]
ClientFactory = Callable[[str], Any]


class SetupResult(BaseModel):
    queue_name: str = Field(description="SQS queue receiving the alarm state changes.")
    queue_url: str = Field(description="Its URL: the value for cloudwatch.sqs_queue_url.")
    queue_arn: str = Field(description="Its ARN.")
    rule_name: str = Field(description="EventBridge rule on the default event bus.")
    rule_arn: str = Field(description="Its ARN (the SourceArn the queue policy allows).")
    event_pattern: dict[str, Any] = Field(description="The rule's event pattern.")
    actions: dict[Resource, Action] = Field(description="What happened to each resource in this run.")

    @computed_field(description="Whether this run created or corrected anything.")  # type: ignore[prop-decorator]
    @property
    def changed(self) -> bool:
        return any(action != "unchanged" for action in self.actions.values())


def alarm_event_pattern(alarm_names: list[str], alarm_name_prefix: str | None) -> dict[str, Any]:
    """Alarm state changes, narrowed to the followed alarms (exact names, or the prefix) when any are given."""
    pattern: dict[str, Any] = {"source": ["aws.cloudwatch"], "detail-type": ["CloudWatch Alarm State Change"]}
    names: list[Any] = list(dict.fromkeys(alarm_names))
    if alarm_name_prefix:
        names.append({"prefix": alarm_name_prefix})
    if names:
        pattern["detail"] = {"alarmName": names}
    return pattern


def queue_policy_statement(sid: str, queue_arn: str, rule_arn: str) -> dict[str, Any]:
    """Lets EventBridge send to the queue, for this rule only."""
    return {
        "Sid": sid,
        "Effect": "Allow",
        "Principal": {"Service": "events.amazonaws.com"},
        "Action": "sqs:SendMessage",
        "Resource": queue_arn,
        "Condition": {"ArnEquals": {"aws:SourceArn": rule_arn}},
    }


def ensure_alarm_event_pipeline(
    config: CloudWatchConfig,
    *,
    queue_name: str = DEFAULT_QUEUE_NAME,
    rule_name: str = DEFAULT_RULE_NAME,
    client_factory: ClientFactory | None = None,
) -> SetupResult:
    """Create (or find, or correct) the queue, its policy, the rule and its target; blocking.

    Region, profile, endpoint and retries come from ``config``; the rule's pattern is narrowed to
    ``config.alarm_names`` / ``config.alarm_name_prefix`` when they are set.

    Raises:
        SetupError: a name is invalid, or AWS refused or could not be reached; the message names what to fix.
    """
    if not QUEUE_NAME.match(queue_name):
        raise SetupError(f"invalid queue name {queue_name!r}: 1-80 letters, digits, '-' or '_'")
    if not RULE_NAME.match(rule_name):
        raise SetupError(f"invalid rule name {rule_name!r}: 1-64 letters, digits, '.', '-' or '_'")
    return _Pipeline(config, client_factory or AwsClients(config).client).ensure(queue_name, rule_name)


class _Pipeline:
    def __init__(self, config: CloudWatchConfig, client_factory: ClientFactory) -> None:
        self._config = config
        self._factory = client_factory

    def _call(self, service: str, operation: str, **kwargs: Any) -> Any:
        """One AWS call with the configured retries; botocore errors become a SetupError saying what to fix."""
        with explained_errors(service, operation, self._config):
            client = self._factory(service)
            method = getattr(client, snake_case(operation))
            return call_with_retry(
                lambda: method(**kwargs),
                attempts=self._config.retry_attempts,
                initial=self._config.retry_initial_seconds,
            )

    def ensure(self, queue_name: str, rule_name: str) -> SetupResult:
        actions: dict[Resource, Action] = {}
        queue_url, actions["queue"] = self._queue(queue_name)
        attributes = self._call("sqs", "GetQueueAttributes", QueueUrl=queue_url, AttributeNames=["QueueArn", "Policy"])
        queue_arn = attributes["Attributes"]["QueueArn"]
        pattern = alarm_event_pattern(self._config.alarm_names, self._config.alarm_name_prefix)
        rule_arn, actions["rule"] = self._rule(rule_name, pattern)
        actions["queue_policy"] = self._policy(queue_url, queue_arn, rule_name, rule_arn, attributes["Attributes"])
        actions["target"] = self._target(rule_name, queue_arn)
        return SetupResult(
            queue_name=queue_name,
            queue_url=queue_url,
            queue_arn=queue_arn,
            rule_name=rule_name,
            rule_arn=rule_arn,
            event_pattern=pattern,
            actions={key: actions[key] for key in ("queue", "queue_policy", "rule", "target")},
        )

    def _queue(self, name: str) -> tuple[str, Action]:
        try:
            return str(self._call("sqs", "GetQueueUrl", QueueName=name)["QueueUrl"]), "unchanged"
        except SetupError as exc:
            if exc.code not in _MISSING_QUEUE:
                raise
        return str(self._call("sqs", "CreateQueue", QueueName=name)["QueueUrl"]), "created"

    def _rule(self, name: str, pattern: dict[str, Any]) -> tuple[str, Action]:
        try:
            found = self._call("events", "DescribeRule", Name=name)
        except SetupError as exc:
            if exc.code != "ResourceNotFoundException":
                raise
            found = None
        if found is not None and _same_rule(found, pattern):
            return str(found["Arn"]), "unchanged"
        arn = self._call(
            "events",
            "PutRule",
            Name=name,
            EventPattern=json.dumps(pattern),
            State="ENABLED",
            Description=RULE_DESCRIPTION,
        )["RuleArn"]
        return str(arn), "created" if found is None else "updated"

    def _policy(self, url: str, queue_arn: str, rule_name: str, rule_arn: str, attributes: dict[str, str]) -> Action:
        sid = "EventBridgeRule" + re.sub(r"[^A-Za-z0-9]", "", rule_name)
        wanted = queue_policy_statement(sid, queue_arn, rule_arn)
        policy: dict[str, Any] = json.loads(attributes["Policy"]) if attributes.get("Policy") else {}
        statements = policy.get("Statement", [])
        statements = [statements] if isinstance(statements, dict) else list(statements)
        if any(_normalised(s) == _normalised(wanted) for s in statements):
            return "unchanged"
        # Keep whatever else the policy allows; replace only our own statement.
        others = [s for s in statements if s.get("Sid") != sid]
        document = {"Version": policy.get("Version", "2012-10-17"), "Statement": [*others, wanted]}
        if "Id" in policy:
            document["Id"] = policy["Id"]
        self._call("sqs", "SetQueueAttributes", QueueUrl=url, Attributes={"Policy": json.dumps(document)})
        return "updated" if len(others) < len(statements) else "created"

    def _target(self, rule_name: str, queue_arn: str) -> Action:
        targets = self._call("events", "ListTargetsByRule", Rule=rule_name).get("Targets", [])
        plain = [
            t for t in targets if t.get("Arn") == queue_arn and not set(t) & {"Input", "InputPath", "InputTransformer"}
        ]
        if plain:
            return "unchanged"
        ours = any(t.get("Id") == TARGET_ID for t in targets)
        response = self._call("events", "PutTargets", Rule=rule_name, Targets=[{"Id": TARGET_ID, "Arn": queue_arn}])
        if response.get("FailedEntryCount"):
            failed = response.get("FailedEntries", [{}])[0]
            raise SetupError(
                f"events:PutTargets refused the queue target: {failed.get('ErrorCode')}: {failed.get('ErrorMessage')}",
                code=str(failed.get("ErrorCode") or ""),
            )
        return "updated" if ours else "created"


def _same_rule(found: dict[str, Any], pattern: dict[str, Any]) -> bool:
    try:
        current = json.loads(found.get("EventPattern") or "null")
    except ValueError:
        return False
    return bool(current == pattern and found.get("State") == "ENABLED" and found.get("Description") == RULE_DESCRIPTION)


def _normalised(value: Any) -> Any:
    """Policy JSON compared loosely: a one-item list is the item (AWS may store either form)."""
    if isinstance(value, dict):
        return {k: _normalised(v) for k, v in value.items()}
    if isinstance(value, list):
        return _normalised(value[0]) if len(value) == 1 else [_normalised(v) for v in value]
    return value


def snake_case(operation: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", operation).lower()


@contextmanager
def explained_errors(
    service: str, operation: str, config: CloudWatchConfig, permissions: tuple[str, ...] = REQUIRED_PERMISSIONS
) -> Iterator[None]:
    """Map botocore's errors to a SetupError that says what to fix (imported here: botocore is slow to load);
    an access denial names ``permissions``, those the identity needs."""
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        ConnectionClosedError,
        ConnectTimeoutError,
        EndpointConnectionError,
        NoCredentialsError,
        PartialCredentialsError,
        ProfileNotFound,
        ReadTimeoutError,
    )

    action = f"{service}:{operation}"
    try:
        yield
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code, message = str(error.get("Code", "")), str(error.get("Message", ""))
        if code in _ACCESS_DENIED:
            text = (
                f"access denied for {action} ({message or code}); the AWS identity in use needs "
                f"{', '.join(permissions)}"
            )
        elif code in _BAD_CREDENTIALS:
            text = (
                f"AWS rejected the credentials ({code}) on {action}; refresh them, or pick another profile "
                "with AWS_PROFILE or SELF_BUILDING_CLOUDWATCH__PROFILE"
            )
        else:
            text = f"{action} failed: {code}: {message}".rstrip(": ")
        raise SetupError(text, code=code) from exc
    except (NoCredentialsError, PartialCredentialsError) as exc:
        raise SetupError(
            "no usable AWS credentials; set AWS_PROFILE (or SELF_BUILDING_CLOUDWATCH__PROFILE), "
            "or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
        ) from exc
    except ProfileNotFound as exc:
        raise SetupError(
            f"AWS profile {exc.kwargs.get('profile')!r} does not exist; fix SELF_BUILDING_CLOUDWATCH__PROFILE "
            "or AWS_PROFILE, or add the profile to ~/.aws/config"
        ) from exc
    except (EndpointConnectionError, ConnectionClosedError, ConnectTimeoutError, ReadTimeoutError) as exc:
        endpoint = exc.kwargs.get("endpoint_url") or config.endpoint_url or "the AWS endpoint"
        raise SetupError(
            f"cannot reach {service} at {endpoint} ({type(exc).__name__}); check the network, the region "
            f"({config.region}), or SELF_BUILDING_CLOUDWATCH__ENDPOINT_URL / AWS_ENDPOINT_URL"
        ) from exc
    except BotoCoreError as exc:
        raise SetupError(f"{action} failed: {exc}") from exc
