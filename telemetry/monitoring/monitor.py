"""Threshold monitoring: a sampling loop that raises, updates and clears events, and tells listeners."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from anyio.abc import TaskGroup
from pydantic import BaseModel, Field

from telemetry.clock import Clock, SystemClock
from telemetry.errors import StorageFullError, failure_text
from telemetry.host.models import Snapshot
from telemetry.host.sampler import Sampler
from telemetry.monitoring.events import EventStore, MonitoringEvent, NewEvent
from telemetry.monitoring.thresholds import ConditionTracker, Reading, Thresholds, readings, severity_for

logger = logging.getLogger(__name__)
STOP_WAIT_SECONDS = 10.0  # how long stop() waits for a sample in flight (reading the host takes milliseconds)
EventListener = Callable[[list[MonitoringEvent]], Awaitable[None]]
THRESHOLDS_KEY = "monitoring.thresholds"
SPIKE_COALESCE_SECONDS = 300.0
_LABELS = {
    "cpu_high": "CPU usage",
    "memory_high": "Memory usage",
    "disk_full": "Disk usage",
    "gpu_temperature_high": "GPU temperature",
    "gpu_memory_high": "GPU memory usage",
}


class MonitorState(BaseModel):
    running: bool = Field(description="True while the sampling loop runs.")
    interval_seconds: float = Field(description="Seconds between samples.")
    thresholds: Thresholds = Field(description="Limits in force.")
    samples: int = Field(description="Samples evaluated since the server started.")
    last_sample_at: float | None = Field(None, description="Unix time of the last evaluated sample.")
    last_error: str | None = Field(None, description="The last sampling error, if the loop hit one.")
    active_events: int = Field(description="Open events (once stopped: as of its last sample, not updated).")


LOOP_TASK = "monitoring loop"  # the name of the loop's task


class Monitor:
    """Owns the monitoring loop. Runs inside a task group that the server's lifespan provides."""

    def __init__(
        self,
        sampler: Sampler,
        store: EventStore,
        *,
        interval: float = 30.0,
        max_events: int = 10_000,
        max_age_seconds: float = 30 * 86400,
        clock: Clock | None = None,
    ) -> None:
        self.sampler = sampler
        self.store = store
        self.interval = interval
        self.thresholds = Thresholds()
        self._max_events = max_events
        self._max_age = max_age_seconds
        self._clock = clock or SystemClock()
        self._tracker = ConditionTracker()
        self._listeners: list[EventListener] = []
        self._task_group: TaskGroup | None = None
        self._scope: anyio.CancelScope | None = None
        self._ended = anyio.Event()  # set when the current loop has ended
        self._previous_cpu: float | None = None
        self._last_spike: MonitoringEvent | None = None
        self._tick_lock = anyio.Lock()
        self.active: dict[int, MonitoringEvent] = {}
        self.samples = 0
        self.last_sample_at: float | None = None
        self.last_error: str | None = None

    async def open(self, task_group: TaskGroup) -> None:
        """Load persisted thresholds and open events, prune old ones; the loop will run in ``task_group``."""
        self._task_group = task_group
        saved = await self.store.get_setting(THRESHOLDS_KEY)
        if saved:
            try:
                self.thresholds = Thresholds.model_validate_json(saved)
            except ValueError:
                logger.warning("ignoring unreadable saved thresholds; using defaults")
        page = await self.store.query(active=True, limit=500)
        for event in page.events:
            self.active[event.id] = event
            if event.event_type != "cpu_spike":
                self._tracker.restore(f"{event.event_type}:{event.resource}", event.id, event.peak)
        await self.store.prune(self._max_events, self._max_age, self._clock())

    def add_listener(self, listener: EventListener) -> None:
        """Call ``listener`` with every batch of raised, updated or resolved events.

        Listeners are called outside the monitor's lock, one after the other, and must not wait on anything slow
        (a client, the network): they queue what they need and return, or the sampling loop waits for them.
        """
        self._listeners.append(listener)

    @property
    def running(self) -> bool:
        return self._scope is not None

    async def start(self, interval: float | None = None, thresholds: Thresholds | None = None) -> None:
        """Start (or retune) the loop. Restarting with a new interval takes effect at once."""
        if thresholds is not None:
            await self.set_thresholds(thresholds)
        if interval is not None:
            self.interval = interval
        await self.stop()
        if self._task_group is None:
            raise RuntimeError("monitor is not open: the server lifespan has not started")
        scope, ended = anyio.CancelScope(), anyio.Event()
        self._scope, self._ended = scope, ended
        self._task_group.start_soon(self._loop, scope, ended, name=LOOP_TASK)

    async def stop(self) -> bool:
        """Stop the loop and wait until it has ended (a sample in flight finishes first); returns whether it was
        running. Once this returns, nothing samples until the next start."""
        scope, self._scope = self._scope, None
        if scope is None:
            return False
        scope.cancel()
        with anyio.move_on_after(STOP_WAIT_SECONDS) as waiting:
            await self._ended.wait()
        if waiting.cancelled_caught:
            logger.warning("the monitoring loop did not end within %g s of being stopped", STOP_WAIT_SECONDS)
        return True

    async def set_thresholds(self, thresholds: Thresholds) -> None:
        self.thresholds = thresholds
        await self.store.put_setting(THRESHOLDS_KEY, thresholds.model_dump_json())

    async def clear(self) -> int:
        """Delete every stored event and forget open conditions; returns how many were deleted."""
        async with self._tick_lock:
            deleted = await self.store.clear()
            self._tracker = ConditionTracker()
            self.active.clear()
            self._last_spike = None
        await self._notify([])
        return deleted

    def state(self) -> MonitorState:
        return MonitorState(
            running=self.running,
            interval_seconds=self.interval,
            thresholds=self.thresholds,
            samples=self.samples,
            last_sample_at=self.last_sample_at,
            last_error=self.last_error,
            active_events=len(self.active),
        )

    async def _loop(self, scope: anyio.CancelScope, ended: anyio.Event) -> None:
        with scope:
            try:
                await self._ticks()
            finally:
                ended.set()

    async def _ticks(self) -> None:
        while True:
            started = self._clock()
            try:
                await self.tick()
            except StorageFullError as exc:  # the event store logs the episode once; the next tick retries
                self.last_error = str(exc)
            except Exception as exc:  # a bad sample must not end monitoring
                self.last_error = failure_text(exc, logger, "a monitoring tick")
            await self._clock.sleep_until(started + self.interval)

    async def tick(self, snapshot: Snapshot | None = None) -> list[MonitoringEvent]:
        """Evaluate one sample (a fresh one unless given); returns the events it changed."""
        async with self._tick_lock:
            snap = snapshot if snapshot is not None else await self.sampler.refresh()
            now = snap.host.timestamp
            changed: list[MonitoringEvent] = []
            for transition in self._tracker.step(readings(snap, self.thresholds), self.thresholds):
                event = await self._apply(
                    transition.action, transition.reading, transition.event_id, transition.peak, now
                )
                if event is not None:
                    changed.append(event)
            spike = await self._check_spike(snap.host.cpu.percent, now)
            if spike is not None:
                changed.append(spike)
            for event in changed:
                if event.active:
                    self.active[event.id] = event
                else:
                    self.active.pop(event.id, None)
            self.samples += 1
            self.last_sample_at = now
            self.last_error = None
            if changed:
                await self.store.prune(self._max_events, self._max_age, self._clock())
        if changed:  # outside the lock: a listener still at work holds up neither clear() nor the state
            await self._notify(changed)
        return changed

    async def _apply(
        self, action: str, reading: Reading, event_id: int | None, peak: float, now: float
    ) -> MonitoringEvent | None:
        if action == "resolve":
            return await self.store.resolve(event_id, now) if event_id is not None else None
        severity = severity_for(reading.event_type, max(reading.value, peak), reading.threshold)
        message = _message(reading)
        if action == "raise":
            event = await self.store.add(
                NewEvent(
                    event_type=reading.event_type,
                    severity=severity,
                    resource=reading.resource,
                    message=message,
                    value=reading.value,
                    threshold=reading.threshold,
                    timestamp=now,
                )
            )
            self._tracker.states[reading.key].event_id = event.id
            logger.info("monitoring event raised: %s", message)
            return event
        assert event_id is not None
        return await self.store.touch(
            event_id, value=reading.value, peak=peak, severity=severity, message=message, at=now
        )

    async def _check_spike(self, cpu: float, now: float) -> MonitoringEvent | None:
        previous, self._previous_cpu = self._previous_cpu, cpu
        if previous is None:
            return None
        jump = cpu - previous
        limit = self.thresholds.cpu_spike_points
        if jump <= limit:
            return None
        severity = severity_for("cpu_spike", jump, limit)
        message = f"CPU jumped {jump:.1f} points in one sample ({previous:.1f}% → {cpu:.1f}%)"
        last = self._last_spike
        if last is not None and now - last.last_seen <= SPIKE_COALESCE_SECONDS:
            touched = await self.store.touch(
                last.id,
                value=jump,
                peak=jump,
                severity=max(severity, last.severity, key=_rank),
                message=message,
                at=now,
            )
            if touched is not None:
                self._last_spike = touched
                return touched
        event = await self.store.add(
            NewEvent(
                event_type="cpu_spike",
                severity=severity,
                resource="cpu",
                message=message,
                value=jump,
                threshold=limit,
                timestamp=now,
                active=False,
            )
        )
        self._last_spike = event
        return event

    async def _notify(self, events: list[MonitoringEvent]) -> None:
        for listener in self._listeners:
            try:
                await listener(events)
            except Exception:  # one broken listener must not break monitoring or the others
                logger.exception("monitoring event listener failed")


def _message(reading: Reading) -> str:
    label = _LABELS.get(reading.event_type, reading.event_type)
    where = "" if reading.resource in ("cpu", "memory") else f" on {reading.resource}"
    return f"{label}{where} at {reading.value:.1f}{reading.unit} (limit {reading.threshold:g}{reading.unit})"


def _rank(severity: Any) -> int:
    return ("low", "medium", "high", "critical").index(severity)
