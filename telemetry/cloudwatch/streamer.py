"""Runs the CloudWatch sources (metrics, logs, alarms, EventBridge events) behind one breaker each, off the loop."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Literal

import anyio
import anyio.to_thread
from pydantic import BaseModel, Field

from telemetry.cloudwatch.alarm_table import AlarmState
from telemetry.cloudwatch.alarms import AlarmWatcher
from telemetry.cloudwatch.aws import AwsClients
from telemetry.cloudwatch.breaker import BreakerStatus, CircuitBreaker
from telemetry.cloudwatch.config import CloudWatchConfig
from telemetry.cloudwatch.logs import LogFetcher
from telemetry.cloudwatch.metrics import MetricFetcher
from telemetry.cloudwatch.retry import call_with_retry, describe_error
from telemetry.errors import StorageFullError
from telemetry.store.records import TelemetryStore

logger = logging.getLogger(__name__)
SourceName = Literal["cloudwatch.metrics", "cloudwatch.logs", "cloudwatch.alarms", "cloudwatch.events"]
SOURCES: tuple[SourceName, ...] = ("cloudwatch.metrics", "cloudwatch.logs", "cloudwatch.alarms", "cloudwatch.events")


class SourceHealth(BaseModel):
    name: str = Field(description="Source name.")
    enabled: bool = Field(description="Whether it is configured.")
    mode: str | None = Field(None, description="What it watches and how, or why it is off.")
    last_success: float | None = Field(None, description="Unix time of the last good poll.")
    last_error: str | None = Field(None, description="Last error, if the last poll failed.")
    last_error_at: float | None = Field(None, description="Unix time of the last failure.")
    items_ingested: int = Field(0, description="New items stored since start-up (re-reads not counted).")
    polls: int = Field(0, description="Polls (AWS reads) attempted since start-up.")
    failures: int = Field(0, description="Failed polls since start-up.")
    breaker: BreakerStatus | None = Field(None, description="Circuit breaker (remote sources).")


@dataclass(frozen=True, slots=True)
class AlarmReading:
    """What ``get_alarm_states`` serves: the table's states; whether DescribeAlarms was called for them (an AWS access,
    audited); whether CloudWatch could not be asked (the states are the last known), why, and the breaker; and, when
    it could not and no state is known, what is wrong and what to do."""

    alarms: list[AlarmState]
    asked: bool
    stale: bool
    error: str | None
    breaker: BreakerStatus
    problem: str | None = None


@dataclass
class _Source:
    name: SourceName
    enabled: bool
    breaker: CircuitBreaker
    poll: Callable[[], int]
    mode: str
    polled: bool = True  # whether its loop runs (the alarms with a queue are read on demand and by events)
    last_success: float | None = None
    last_error: str | None = None
    last_error_at: float | None = None
    items: int = 0
    polls: int = 0
    failures: int = 0
    lock: anyio.Lock = field(default_factory=anyio.Lock)


class CloudWatchStreamer:
    """Owns the CloudWatch sources. ``run()`` loops until cancelled; ``poll(name)`` runs one poll now."""

    def __init__(
        self,
        config: CloudWatchConfig,
        store: TelemetryStore,
        *,
        clients: AwsClients | None = None,
        clock: Callable[[], float] = time.time,
        on_access: Callable[[str, dict[str, Any]], None] | None = None,
    ) -> None:
        """``on_access(kind, detail)`` (blocking; run in a worker thread) hears when streaming starts and when a
        source's breaker opens or closes: the server writes these to its audit log."""
        self.config = config
        self._on_access = on_access
        self._clients = clients or AwsClients(config)
        self._clock = clock
        self._metrics = MetricFetcher(config, store, clock)
        self._logs = LogFetcher(config, store, clock)
        self.alarms = AlarmWatcher(config, store, clock)
        queue = config.sqs_queue_url is not None
        following = self.alarms.following
        every = f"every {config.poll_interval_seconds:g} s"
        alarms_mode = (
            f"DescribeAlarms {every}; changes stored as events"
            if not queue
            else f"EventBridge changes via the queue; DescribeAlarms on demand, cached {config.alarm_cache_seconds:g} s"
            if following
            else "EventBridge changes via the queue only (no alarm_names or alarm_name_prefix to describe)"
        )
        polls: dict[SourceName, tuple[bool, Callable[[], int], str]] = {
            "cloudwatch.metrics": (
                bool(config.metrics),
                lambda: self._metrics.fetch(self._cw(), self._call),
                f"GetMetricData {every}" if config.metrics else "off: no metrics configured",
            ),
            "cloudwatch.logs": (
                bool(config.log_groups or config.log_group_prefixes),
                lambda: self._logs.fetch(self._clients.client("logs"), self._call),
                f"FilterLogEvents {every}" if config.log_groups or config.log_group_prefixes else "off: no log groups",
            ),
            "cloudwatch.alarms": (
                following or queue,
                lambda: self.alarms.poll_changes(self._cw(), self._call),
                alarms_mode if following or queue else "off: no alarm_names, alarm_name_prefix or sqs_queue_url",
            ),
            "cloudwatch.events": (
                queue,
                lambda: self.alarms.receive(self._clients.client("sqs"), self._call),
                f"SQS long poll ({config.sqs_wait_seconds} s)" if queue else "off: no sqs_queue_url",
            ),
        }
        self._sources = {
            name: _Source(
                name,
                enabled,
                CircuitBreaker(config.breaker_failure_threshold, config.breaker_cooldown_seconds, clock),
                poll,
                mode,
                polled=enabled and not (name == "cloudwatch.alarms" and queue),
            )
            for name, (enabled, poll, mode) in polls.items()
        }
        # On-demand DescribeAlarms (get_alarm_states): one at a time, so that callers waiting meanwhile share its
        # answer; apart from the alarms poll's lock, so that a poll retrying through an outage never holds them up.
        self._read_lock = anyio.Lock()
        self._reads = 0

    def _cw(self) -> Any:
        return self._clients.client("cloudwatch")

    def _call(self, fn: Callable[[], Any]) -> Any:
        return call_with_retry(fn, attempts=self.config.retry_attempts, initial=self.config.retry_initial_seconds)

    @staticmethod
    def _call_once(fn: Callable[[], Any]) -> Any:
        return fn()

    async def poll(self, name: SourceName) -> int:
        """One poll of a source through its breaker; returns items stored (0 when the breaker is open)."""
        source = self._sources[name]
        async with source.lock:
            if not source.breaker.allow():
                return 0
            source.polls += 1
            before = source.breaker.state
            try:
                stored = await anyio.to_thread.run_sync(source.poll, abandon_on_cancel=True)
            except StorageFullError as exc:  # ours, not AWS's: the breaker stays as it is (the store logs the episode)
                source.last_error, source.last_error_at = str(exc), self._clock()
                logger.debug("%s poll could not store: %s", name, exc)
                stored = 0
            except Exception as exc:  # any AWS or network failure counts against the breaker
                source.failures += 1
                source.last_error, source.last_error_at = describe_error(exc), self._clock()
                source.breaker.record_failure()
                logger.warning("%s poll failed (%s); breaker %s", name, source.last_error, source.breaker.state)
                stored = 0
            else:
                source.breaker.record_success()
                source.items += stored
                source.last_success, source.last_error = self._clock(), None
            await self._breaker_changed(source, before)
            return stored

    async def _breaker_changed(self, source: _Source, before: str) -> None:
        after = source.breaker.state
        if after != before and after in ("open", "closed") and self._on_access is not None:
            detail = {"source": source.name, "from": before, "to": after, "error": source.last_error}
            await anyio.to_thread.run_sync(self._on_access, "cloudwatch_breaker", detail)

    async def run(self) -> None:
        """Poll every enabled source until cancelled."""
        if self._on_access is not None:
            detail = {
                "region": self.config.region,
                "endpoint_url": self.config.endpoint_url,
                "sources": sorted(name for name, source in self._sources.items() if source.enabled),
            }
            await anyio.to_thread.run_sync(self._on_access, "cloudwatch_stream_started", detail)
        async with anyio.create_task_group() as group:
            for name, source in self._sources.items():
                if source.polled:
                    group.start_soon(partial(self._loop, name))

    async def _loop(self, name: SourceName) -> None:
        # The event queue long-polls by itself; the others wait out the poll interval between polls.
        pause = 1.0 if name == "cloudwatch.events" else self.config.poll_interval_seconds
        while True:
            await self.poll(name)
            await anyio.sleep(pause)

    def health(self) -> list[SourceHealth]:
        return [
            SourceHealth(
                name=s.name,
                enabled=s.enabled,
                mode=s.mode,
                last_success=s.last_success,
                last_error=s.last_error,
                last_error_at=s.last_error_at,
                items_ingested=s.items,
                polls=s.polls,
                failures=s.failures,
                breaker=s.breaker.status(),
            )
            for s in self._sources.values()
        ]

    async def alarm_states(self) -> AlarmReading:
        """The alarm state table. DescribeAlarms is called (through the alarms breaker) only when the table was not
        refreshed within ``alarm_cache_seconds``; while CloudWatch cannot be asked, the last known states answer at
        once (``stale``), and ``problem`` says what is wrong when no state is known at all."""
        if not self.alarms.following:  # nothing to describe: the queue's events are all there is
            return self._reading(self._sources["cloudwatch.events"], asked=False)
        source, table = self._sources["cloudwatch.alarms"], self.alarms.table
        reads = self._reads
        async with self._read_lock:
            refreshed = table.refreshed_at
            if refreshed is not None and self._clock() - refreshed < self.config.alarm_cache_seconds:
                return self._reading(source, asked=False, stale=False)
            # Another caller's read while this one waited answers it too; an open breaker, or a half-open one whose
            # probe the alarms poll is sending, lets nothing out.
            probing = source.breaker.state == "half_open" and source.lock.locked()
            if self._reads != reads or not source.breaker.allow() or probing:
                return self._reading(source, asked=False)
            self._reads += 1
            source.polls += 1
            before = source.breaker.state
            # With states to fall back on, one try: the caller gets them at once rather than after the backoff.
            call = self._call_once if table.known else self._call
            try:
                await anyio.to_thread.run_sync(lambda: self.alarms.describe(self._cw(), call), abandon_on_cancel=True)
            except Exception as exc:  # any AWS or network failure counts against the breaker
                source.failures += 1
                source.breaker.record_failure()
                source.last_error, source.last_error_at = describe_error(exc), self._clock()
            else:
                source.breaker.record_success()
                source.last_success, source.last_error = self._clock(), None
            await self._breaker_changed(source, before)
            return self._reading(source, asked=True)

    def _reading(self, source: _Source, *, asked: bool, stale: bool | None = None) -> AlarmReading:
        """The table as it stands; stale (unless told) when the source's last read failed or its breaker is open."""
        breaker = source.breaker.status()
        if stale is None:
            stale = source.last_error is not None or breaker.state == "open"
        states = self.alarms.table.states()
        problem = None
        if stale and not states:
            wait = (
                f"the breaker is open: the next try is in {max(0.0, breaker.retry_at - self._clock()):.0f} s"
                if breaker.state == "open" and breaker.retry_at is not None
                else "then call again"
            )
            what = "CloudWatch alarms" if source.name == "cloudwatch.alarms" else "the alarm event queue"
            problem = (
                f"could not read {what} ({source.last_error}) and no alarm state is known yet: check that AWS is "
                f"reachable ({self.config.endpoint_url or self.config.region}) and that the credentials allow "
                f"{'cloudwatch:DescribeAlarms' if source.name == 'cloudwatch.alarms' else 'sqs:ReceiveMessage'}; {wait}"
            )
        return AlarmReading(states, asked, stale, source.last_error if stale else None, breaker, problem)
