"""Alarms: DescribeAlarms and EventBridge state changes (via SQS) into one state table; without a queue, state changes
are found by polling DescribeAlarms and stored as events."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from telemetry.cloudwatch.alarm_table import AlarmState, AlarmTable, AlarmUpdate
from telemetry.cloudwatch.config import CloudWatchConfig
from telemetry.cloudwatch.tenancy import TENANT_KEY, tenant_for
from telemetry.store.records import EventRecord, TelemetryStore

logger = logging.getLogger(__name__)
SOURCE = "cloudwatch"
ALARM_DETAIL_TYPE = "CloudWatch Alarm State Change"
COMPONENT_KEYS = ("Component", "component", "Service", "service")
STATES = frozenset({"OK", "ALARM", "INSUFFICIENT_DATA"})


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

    def forget(self, keys: list[str]) -> None:
        """Unsee ``keys`` (their events were not stored after all: the re-delivered messages must count again)."""
        for key in keys:
            self._ids.pop(key, None)


def content_key(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:32]


class AlarmWatcher:
    """Blocking; runs in worker threads."""

    def __init__(self, config: CloudWatchConfig, store: TelemetryStore, clock: Callable[[], float] = time.time):
        self._config = config
        self._store = store
        self._clock = clock
        self.table = AlarmTable(clock)
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

    @property
    def following(self) -> bool:
        """Whether alarms are followed by name or prefix (else only the queue's events name them)."""
        return bool(self._config.alarm_names or self._config.alarm_name_prefix)

    def follows(self, name: str) -> bool:
        prefix = self._config.alarm_name_prefix
        if not self.following:
            return True  # the EventBridge rule chose what reaches the queue
        return name in self._config.alarm_names or (prefix is not None and name.startswith(prefix))

    def describe(self, cw: Any, call: Callable[[Callable[[], Any]], Any]) -> list[AlarmState]:
        """The followed alarms' states by DescribeAlarms (an AWS call each time), applied to the table."""
        started = self._clock()
        alarms: list[AlarmState] = []
        requests: list[dict[str, Any]] = []
        if self._config.alarm_names:
            requests += [
                {"AlarmNames": self._config.alarm_names[i : i + 100]}
                for i in range(0, len(self._config.alarm_names), 100)
            ]
        if self._config.alarm_name_prefix:
            requests.append({"AlarmNamePrefix": self._config.alarm_name_prefix})
        if not requests:
            return []  # nothing to ask for; the table keeps what events told
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
        unique = sorted({a.name: a for a in alarms}.values(), key=lambda a: a.name)
        self.table.refreshed(unique, started=started)
        return unique

    def poll_changes(self, cw: Any, call: Callable[[Callable[[], Any]], Any]) -> int:
        """Fallback without a queue: compare states with the previous poll; store each change as an event."""
        events = []
        for alarm in self.describe(cw, call):
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
            found = self._event_from(message.get("Body", ""))
            if found is None:
                continue
            record, update = found
            if update is not None and self.follows(update.state.name):
                self.table.apply(update)  # newest wins: a repeated or late event changes nothing
            if not self.dedup.seen(record.dedup_key or ""):
                events.append(record)
        try:
            stored = self._store.add_events(events) if events else 0
        except Exception:  # e.g. a full disk: the messages stay on the queue, and their re-delivery is not a repeat
            self.dedup.forget([e.dedup_key or "" for e in events])
            raise
        if handled:  # only after the events are stored: a crash before this re-delivers them (and dedup drops them)
            call(lambda: sqs.delete_message_batch(QueueUrl=url, Entries=handled))
        return stored

    def _event_from(self, body: str) -> tuple[EventRecord, AlarmUpdate | None] | None:
        """The event a queue message carries, with the alarm state it reports (if it is an alarm state change with a
        state); None (and a log line) when it is not an EventBridge event. Nothing here raises: a bad message must
        not block the queue (it is deleted with the others)."""
        try:
            event = json.loads(body)
            if not isinstance(event, dict) or not isinstance(event.get("detail"), dict):
                raise ValueError("not an EventBridge event (no detail object)")
            if event.get("detail-type") == ALARM_DETAIL_TYPE:
                return self._alarm_event(event)
            return self._other_event(event), None
        except (ValueError, TypeError, AttributeError) as exc:
            logger.warning("skipping a queue message that is not a usable EventBridge event: %s", exc)
            return None

    def _alarm_event(self, event: dict[str, Any]) -> tuple[EventRecord, AlarmUpdate | None]:
        detail = event["detail"]
        state = _mapping(detail.get("state"))
        previous = _mapping(detail.get("previousState"))
        name = str(detail.get("alarmName", "?"))
        key = str(event.get("id") or content_key(name, state.get("value"), state.get("timestamp")))
        dims: dict[str, Any] = {}
        metric_name = namespace = None
        for metric in _mapping(detail.get("configuration")).get("metrics") or []:
            watched = _mapping(_mapping(_mapping(metric).get("metricStat")).get("metric"))
            dims |= _mapping(watched.get("dimensions"))
            metric_name = metric_name or watched.get("name")
            namespace = namespace or watched.get("namespace")
        component = next((dims[k] for k in COMPONENT_KEYS if k in dims), None)
        tenant = detail.get(TENANT_KEY, dims.get(TENANT_KEY))
        when = _event_time(event.get("time"))
        record = EventRecord(
            tenant_for(tenant, self._config.default_tenant),
            when,
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
        if state.get("value") not in STATES or "alarmName" not in detail:
            return record, None
        reported = AlarmState(
            name=name,
            state=str(state["value"]),
            reason=str(state.get("reason", "")),
            # The state's own timestamp (milliseconds, as DescribeAlarms has it), else the event's (seconds).
            updated_at=_timestamp(state.get("timestamp")) or when,
            metric=None if metric_name is None else str(metric_name),
            namespace=None if namespace is None else str(namespace),
            tenant=record.tenant,
            component=None if component is None else str(component),
            source="EventBridge",
        )
        return record, AlarmUpdate(reported, tenant_known=tenant is not None)

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


def _timestamp(value: Any) -> float | None:
    """Unix time of an ISO 8601 text (``2026-11-25T10:00:00Z``, ``2026-11-25T10:00:00.123+0000``), else None."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()


def _event_time(value: Any) -> float:
    found = _timestamp(value)
    return time.time() if found is None else found
