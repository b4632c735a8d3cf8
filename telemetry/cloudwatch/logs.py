"""Logs by FilterLogEvents with pagination; a uniform sample when a poll window holds too many events."""

from __future__ import annotations

import json
import random
import re
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from telemetry.cloudwatch.config import CloudWatchConfig
from telemetry.cloudwatch.tenancy import tenant_for
from telemetry.store.records import EventRecord, LogRecord, TelemetryStore

SOURCE = "cloudwatch"
_LEVEL = re.compile(r"\b(TRACE|DEBUG|INFO|NOTICE|WARN(?:ING)?|ERROR|CRITICAL|FATAL)\b")
_TENANT_KEYS = ("TenantId", "tenantId", "tenant_id", "tenant")
_COMPONENT_KEYS = ("Component", "component", "service", "logger")


def _fields(message: str) -> dict[str, Any]:
    text = message.strip()
    if not text.startswith("{"):
        return {}
    try:
        parsed = json.loads(text)
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def to_record(event: dict[str, Any], group: str, default_tenant: str) -> LogRecord:
    """A CloudWatch log event as a log record: tenant, level and component from JSON fields or the text."""
    message = str(event.get("message", ""))
    fields = _fields(message)
    tenant = tenant_for(next((fields[k] for k in _TENANT_KEYS if k in fields), None), default_tenant)
    component = next((str(fields[k]) for k in _COMPONENT_KEYS if k in fields), None)
    level = str(fields.get("level") or fields.get("Level") or "")
    if not level:
        match = _LEVEL.search(message[:200])
        level = match.group(1) if match else "INFO"
    level = {"WARN": "WARNING"}.get(level.upper(), level.upper())
    attributes = {"log_group": group, "log_stream": event.get("logStreamName"), "event_id": event.get("eventId")}
    return LogRecord(tenant, float(event.get("timestamp", 0)) / 1000.0, message, level, component, attributes, SOURCE)


class LogFetcher:
    """Blocking; runs in a worker thread. Keeps a cursor per log group (in memory)."""

    def __init__(self, config: CloudWatchConfig, store: TelemetryStore, clock: Callable[[], float] = time.time):
        self._config = config
        self._store = store
        self._clock = clock
        self._cursor: dict[str, int] = {}
        # eventIds read in the overlap window, per group: CloudWatch can index an event after a later one has been
        # read, so each poll re-reads the last ``log_overlap_seconds`` and skips the events it already stored.
        self._recent: dict[str, OrderedDict[str, int]] = {}
        self._random = random.Random()

    def groups(self, logs: Any, call: Callable[[Callable[[], Any]], Any]) -> list[str]:
        names = list(self._config.log_groups)
        for prefix in self._config.log_group_prefixes:
            token: str | None = None
            while True:
                kwargs: dict[str, Any] = {"logGroupNamePrefix": prefix}
                if token:
                    kwargs["nextToken"] = token
                page = call(lambda kw=kwargs: logs.describe_log_groups(**kw))  # type: ignore[misc]
                names += [g["logGroupName"] for g in page.get("logGroups", []) if g["logGroupName"] not in names]
                token = page.get("nextToken")
                if not token:
                    break
        return names

    def fetch(self, logs: Any, call: Callable[[Callable[[], Any]], Any]) -> int:
        """Fetch new events of every group; returns how many records were stored."""
        now_ms = int(self._clock() * 1000)
        stored = 0
        overlap_ms = int(self._config.log_overlap_seconds * 1000)
        for group in self.groups(logs, call):
            cursor = self._cursor.get(group)
            start = now_ms - int(self._config.log_lookback_seconds * 1000) if cursor is None else cursor - overlap_ms
            recent = self._recent.setdefault(group, OrderedDict())
            kept, seen, newest = self._read(logs, call, group, start, now_ms, recent)
            while recent and next(iter(recent.values())) < newest - overlap_ms:
                recent.popitem(last=False)
            records = [to_record(e, group, self._config.default_tenant) for e in kept]
            if records:
                stored += self._store.add_logs(records)
            if seen > len(kept):  # say so: a sample is not the whole window
                self._store.add_events(
                    [
                        EventRecord(
                            self._config.default_tenant,
                            now_ms / 1000.0,
                            "log_sampled",
                            {"log_group": group, "events_in_window": seen, "events_kept": len(kept)},
                            SOURCE,
                            f"log_sampled:{group}:{start}",
                        )
                    ]
                )
            self._cursor[group] = max(newest + 1, cursor or start)
        return stored

    def _read(
        self,
        logs: Any,
        call: Callable[[Callable[[], Any]], Any],
        group: str,
        start: int,
        end: int,
        recent: OrderedDict[str, int],
    ) -> tuple[list[dict[str, Any]], int, int]:
        """The window's events not read before (by eventId), or a uniform reservoir sample of them; with the count
        of new events seen and the newest timestamp."""
        limit = self._config.max_log_events_per_poll
        kept: list[dict[str, Any]] = []
        seen, newest = 0, start - 1
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"logGroupName": group, "startTime": start, "endTime": end}
            if self._config.log_filter_pattern:
                kwargs["filterPattern"] = self._config.log_filter_pattern
            if token:
                kwargs["nextToken"] = token
            page = call(lambda kw=kwargs: logs.filter_log_events(**kw))  # type: ignore[misc]
            for event in page.get("events", []):
                stamp = int(event.get("timestamp", 0))
                event_id = str(event.get("eventId", ""))
                if event_id:
                    if event_id in recent:
                        continue
                    recent[event_id] = stamp
                seen += 1
                newest = max(newest, stamp)
                if len(kept) < limit:
                    kept.append(event)
                else:
                    slot = self._random.randrange(seen)
                    if slot < limit:
                        kept[slot] = event
            token = page.get("nextToken")
            if not token:
                break
        kept.sort(key=lambda e: int(e.get("timestamp", 0)))
        return kept, seen, newest
