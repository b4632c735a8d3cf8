"""Alarms: DescribeAlarms (cached), state changes from EventBridge via SQS, or by polling states when no queue."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from telemetry.cloudwatch.config import CloudWatchConfig
from telemetry.cloudwatch.tenancy import TENANT_KEY, tenant_for
from telemetry.store import EventRecord, TelemetryStore

logger = logging.getLogger(__name__)
SOURCE = "cloudwatch"
ALARM_DETAIL_TYPE = "CloudWatch Alarm State Change"
COMPONENT_KEYS = ("Component", "component", "Service", "service")
AlarmStateValue = Literal["OK", "ALARM", "INSUFFICIENT_DATA"]


class AlarmState(BaseModel):
    name: str = Field(description="Alarm name.")
    state: str = Field(description="OK, ALARM or INSUFFICIENT_DATA.")
    reason: str = Field(description="Why, as CloudWatch says.")
    updated_at: float = Field(description="Unix time of the last state change.")
    metric: str | None = Field(None, description="Metric the alarm watches.")
    namespace: str | None = Field(None, description="Namespace of that metric.")
    tenant: str = Field(description="TenantId dimension of its metric, else the default.")
    component: str | None = Field(None, description="Component dimension of its metric.")


class Deduplicator:
    """Remembers ids for a time window; ``seen(id)`` is True for a repeat within it."""

    def __init__(self, window_seconds: float, clock: Callable[[], float] = time.time, max_ids: int = 100_000):
        self._window = window_seconds
        self._clock = clock
        self._max = max_ids
        self._ids: OrderedDict[str, float] = OrderedDict()

    def seen(self, key: str) -> bool:
        now = self._clock()
        while self._ids and next(iter(self._ids.values())) < now - self._window:
            self._ids.popitem(last=False)
        if key in self._ids:
            return True
        self._ids[key] = now
        if len(self._ids) > self._max:
            self._ids.popitem(last=False)
        return False


def content_key(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:32]


class AlarmWatcher:
    """Blocking; runs in worker threads."""

    def __init__(self, config: CloudWatchConfig, store: TelemetryStore, clock: Callable[[], float] = time.time):
        self._config = config
        self._store = store
        self._clock = clock
        self._cache: list[AlarmState] = []
        self._cached_at = float("-inf")
        self._previous: dict[str, str] = {}
        self.dedup = Deduplicator(config.dedup_window_seconds, clock)

    @staticmethod
    def _component(alarm: dict[str, Any]) -> str | None:
        for dim in alarm.get("Dimensions", []):
            if dim.get("Name") in COMPONENT_KEYS:
                return str(dim.get("Value"))
        return None

    def _tenant(self, alarm: dict[str, Any]) -> str:
        for dim in alarm.get("Dimensions", []):
            if dim.get("Name") == TENANT_KEY:
                return tenant_for(dim.get("Value"), self._config.default_tenant)
        return self._config.default_tenant

    def describe(self, cw: Any, call: Callable[[Callable[[], Any]], Any], *, fresh: bool = False) -> list[AlarmState]:
        """The followed alarms' states, from a cache at most ``alarm_cache_seconds`` old unless ``fresh``."""
        if not fresh and self._clock() - self._cached_at < self._config.alarm_cache_seconds:
            return self._cache
        alarms: list[AlarmState] = []
        requests: list[dict[str, Any]] = []
        if self._config.alarm_names:
            requests += [
                {"AlarmNames": self._config.alarm_names[i : i + 100]}
                for i in range(0, len(self._config.alarm_names), 100)
            ]
        if self._config.alarm_name_prefix:
            requests.append({"AlarmNamePrefix": self._config.alarm_name_prefix})
        for request in requests:
            token: str | None = None
            while True:
                kwargs = dict(request, **({"NextToken": token} if token else {}))
                page = call(lambda kw=kwargs: cw.describe_alarms(**kw))  # type: ignore[misc]
                alarms += [
                    AlarmState(
                        name=a["AlarmName"],
                        state=a["StateValue"],
                        reason=a.get("StateReason", ""),
                        updated_at=a["StateUpdatedTimestamp"].timestamp(),
                        metric=a.get("MetricName"),
                        namespace=a.get("Namespace"),
                        tenant=self._tenant(a),
                        component=self._component(a),
                    )
                    for a in page.get("MetricAlarms", [])
                ]
                token = page.get("NextToken")
                if not token:
                    break
        unique = {a.name: a for a in alarms}
        self._cache, self._cached_at = sorted(unique.values(), key=lambda a: a.name), self._clock()
        return self._cache

    def poll_changes(self, cw: Any, call: Callable[[Callable[[], Any]], Any]) -> int:
        """Fallback without a queue: compare states with the previous poll; store each change as an event."""
        events = []
        for alarm in self.describe(cw, call, fresh=True):
            before = self._previous.get(alarm.name)
            self._previous[alarm.name] = alarm.state
            if before is None or before == alarm.state:
                continue
            key = content_key("alarm", alarm.name, alarm.state, alarm.updated_at)
            if self.dedup.seen(key):
                continue
            events.append(
                EventRecord(
                    alarm.tenant,
                    alarm.updated_at,
                    "alarm_state_change",
                    {
                        "alarm": alarm.name,
                        "previous_state": before,
                        "state": alarm.state,
                        "reason": alarm.reason,
                        "component": alarm.component,
                        "metric": alarm.metric,
                    },
                    SOURCE,
                    key,
                )
            )
        return self._store.add_events(events) if events else 0

    def receive(self, sqs: Any, call: Callable[[Callable[[], Any]], Any]) -> int:
        """One long poll of the queue: store alarm state changes (deduplicated), delete what was handled."""
        url = self._config.sqs_queue_url
        page = call(
            lambda: sqs.receive_message(
                QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=self._config.sqs_wait_seconds
            )
        )
        events: list[EventRecord] = []
        handled: list[dict[str, str]] = []
        for message in page.get("Messages", []):
            handled.append({"Id": message["MessageId"], "ReceiptHandle": message["ReceiptHandle"]})
            record = self._event_from(message.get("Body", ""))
            if record is not None and not self.dedup.seen(record.dedup_key or ""):
                events.append(record)
        stored = self._store.add_events(events) if events else 0
        if handled:  # only after the events are stored: a crash before this re-delivers them (and dedup drops them)
            call(lambda: sqs.delete_message_batch(QueueUrl=url, Entries=handled))
            self._cached_at = float("-inf")  # states changed: the next describe goes to CloudWatch
        return stored

    def _event_from(self, body: str) -> EventRecord | None:
        """The event a queue message carries; None (and a log line) when it is not an EventBridge event. Nothing
        here raises: a bad message must not block the queue (it is deleted with the others)."""
        try:
            event = json.loads(body)
            if not isinstance(event, dict) or not isinstance(event.get("detail"), dict):
                raise ValueError("not an EventBridge event (no detail object)")
            if event.get("detail-type") == ALARM_DETAIL_TYPE:
                return self._alarm_event(event)
            return self._other_event(event)
        except (ValueError, TypeError, AttributeError) as exc:
            logger.warning("skipping a queue message that is not a usable EventBridge event: %s", exc)
            return None

    def _alarm_event(self, event: dict[str, Any]) -> EventRecord:
        detail = event["detail"]
        state = _mapping(detail.get("state"))
        previous = _mapping(detail.get("previousState"))
        name = str(detail.get("alarmName", "?"))
        key = str(event.get("id") or content_key(name, state.get("value"), state.get("timestamp")))
        dims: dict[str, Any] = {}
        metric_name = None
        for metric in _mapping(detail.get("configuration")).get("metrics") or []:
            watched = _mapping(_mapping(_mapping(metric).get("metricStat")).get("metric"))
            dims |= watched.get("dimensions") or {}
            metric_name = metric_name or watched.get("name")
        component = next((dims[k] for k in COMPONENT_KEYS if k in dims), None)
        tenant = detail.get(TENANT_KEY, dims.get(TENANT_KEY))
        return EventRecord(
            tenant_for(tenant, self._config.default_tenant),
            _event_time(event.get("time")),
            "alarm_state_change",
            {
                "alarm": name,
                "previous_state": previous.get("value"),
                "state": state.get("value"),
                "reason": state.get("reason", ""),
                "event_id": event.get("id"),
                "component": component,
                "metric": metric_name,
            },
            SOURCE,
            key,
        )

    def _other_event(self, event: dict[str, Any]) -> EventRecord:
        """Any other EventBridge event the rule let through, stored as it came (type ``eventbridge``)."""
        detail = event["detail"]
        key = str(event.get("id") or content_key("eventbridge", json.dumps(event, sort_keys=True, default=str)))
        return EventRecord(
            tenant_for(detail.get(TENANT_KEY), self._config.default_tenant),
            _event_time(event.get("time")),
            "eventbridge",
            {"source": event.get("source"), "detail_type": event.get("detail-type"), "detail": detail},
            SOURCE,
            key,
        )


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _event_time(value: Any) -> float:
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return time.time()
