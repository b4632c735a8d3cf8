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

from telemetry.cloudwatch.alarms import AlarmState, AlarmWatcher
from telemetry.cloudwatch.aws import AwsClients
from telemetry.cloudwatch.breaker import BreakerStatus, CircuitBreaker
from telemetry.cloudwatch.config import CloudWatchConfig
from telemetry.cloudwatch.logs import LogFetcher
from telemetry.cloudwatch.metrics import MetricFetcher
from telemetry.cloudwatch.retry import call_with_retry, describe_error
from telemetry.errors import StorageFullError, TelemetryError
from telemetry.store import TelemetryStore

logger = logging.getLogger(__name__)
SourceName = Literal["cloudwatch.metrics", "cloudwatch.logs", "cloudwatch.alarms", "cloudwatch.events"]
SOURCES: tuple[SourceName, ...] = ("cloudwatch.metrics", "cloudwatch.logs", "cloudwatch.alarms", "cloudwatch.events")


class SourceHealth(BaseModel):
    name: str = Field(description="Source name.")
    enabled: bool = Field(description="Whether it is configured.")
    last_success: float | None = Field(None, description="Unix time of the last good poll.")
    last_error: str | None = Field(None, description="Last error, if the last poll failed.")
    last_error_at: float | None = Field(None, description="Unix time of the last failure.")
    items_ingested: int = Field(0, description="Items stored since start-up.")
    polls: int = Field(0, description="Polls attempted since start-up.")
    failures: int = Field(0, description="Failed polls since start-up.")
    breaker: BreakerStatus | None = Field(None, description="Circuit breaker (remote sources).")


@dataclass
class _Source:
    name: SourceName
    enabled: bool
    breaker: CircuitBreaker
    poll: Callable[[], int]
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
        following_alarms = bool(config.alarm_names or config.alarm_name_prefix)
        polls: dict[SourceName, tuple[bool, Callable[[], int]]] = {
            "cloudwatch.metrics": (bool(config.metrics), lambda: self._metrics.fetch(self._cw(), self._call)),
            "cloudwatch.logs": (
                bool(config.log_groups or config.log_group_prefixes),
                lambda: self._logs.fetch(self._clients.client("logs"), self._call),
            ),
            "cloudwatch.alarms": (
                following_alarms and not queue,
                lambda: self.alarms.poll_changes(self._cw(), self._call),
            ),
            "cloudwatch.events": (queue, lambda: self.alarms.receive(self._clients.client("sqs"), self._call)),
        }
        self._sources = {
            name: _Source(
                name,
                enabled,
                CircuitBreaker(config.breaker_failure_threshold, config.breaker_cooldown_seconds, clock),
                poll,
            )
            for name, (enabled, poll) in polls.items()
        }

    def _cw(self) -> Any:
        return self._clients.client("cloudwatch")

    def _call(self, fn: Callable[[], Any]) -> Any:
        return call_with_retry(fn, attempts=self.config.retry_attempts, initial=self.config.retry_initial_seconds)

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
                if source.enabled:
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

    async def alarm_states(self) -> list[AlarmState]:
        """The followed alarms (cached for ``alarm_cache_seconds``), through the alarms breaker and its lock, so
        that a half-open breaker lets one probe through and every outcome counts in the source's health."""
        source = self._sources["cloudwatch.alarms"]
        async with source.lock:
            if not source.breaker.allow():
                raise TelemetryError(
                    f"CloudWatch is unreachable (breaker open after: {source.last_error}); retry after the cool-down"
                )
            try:
                alarms = await anyio.to_thread.run_sync(
                    lambda: self.alarms.describe(self._cw(), self._call), abandon_on_cancel=True
                )
            except Exception as exc:
                source.failures += 1
                source.breaker.record_failure()
                source.last_error, source.last_error_at = describe_error(exc), self._clock()
                raise TelemetryError(f"could not read CloudWatch alarms: {source.last_error}") from exc
            source.breaker.record_success()
            source.last_success, source.last_error = self._clock(), None
            return alarms
