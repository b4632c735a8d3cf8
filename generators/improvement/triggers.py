"""Cycles nobody asked for: on a schedule (autonomous mode), and when a critical alarm fires (emergency cycles, at
most one at a time per component; a skipped one is audited once a minute per alarm, not per event)."""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

import anyio
import anyio.to_thread
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from generators.clock import Clock, sleep
from generators.deploy import AuditLog
from generators.improvement.models import CycleRecord, CycleRequest
from generators.improvement.picking import busy_key
from generators.loop import LoopHandOff

logger = logging.getLogger(__name__)
EMERGENCY_QUEUE = 100  # alarms waiting for the emergency loop; beyond that a burst is dropped (and logged)
SKIP_AUDIT_SECONDS = 60.0
AUTONOMOUS_TASK = "autonomous improvement cycles"  # the name of the schedule's task


@dataclass(frozen=True, slots=True)
class Emergency:
    tenant: str
    component: str
    alarm: str
    reason: str
    metric: str | None = None


class Cycles(Protocol):
    """What the triggers need of the improvement service."""

    async def start(self, request: CycleRequest) -> CycleRecord: ...
    def is_busy(self, tenant: str, component: str) -> bool: ...
    def is_running(self, cycle_id: str) -> bool: ...


class Triggers:
    """Starts the cycles of the schedule and of critical alarms through ``cycles``."""

    def __init__(
        self,
        cycles: Cycles,
        audit: AuditLog,
        clock: Clock,
        *,
        ready: Callable[[], str | None],
        autonomous_tenants: tuple[str, ...],
        autonomous_interval_seconds: float,
        emergency_window_hours: float,
    ) -> None:
        self._cycles = cycles
        self._audit = audit
        self._clock = clock
        self._ready = ready
        self._autonomous = autonomous_tenants
        self._interval = autonomous_interval_seconds
        self._emergency_hours = emergency_window_hours
        self._emergencies: MemoryObjectSendStream[Emergency] | None = None
        self._loop = LoopHandOff()
        self._emergency_cycles: dict[tuple[str, str], str] = {}
        self._skips_audited: dict[tuple[str, str, str], float] = {}

    def open(self, task_group: TaskGroup) -> None:
        """Take alarms' emergencies (every replica: an alarm is handled where it arrives)."""
        send, receive = anyio.create_memory_object_stream[Emergency](EMERGENCY_QUEUE)
        self._emergencies = send
        task_group.start_soon(self._emergency_loop, send, receive, self._loop.bind())

    def schedule(self, task_group: TaskGroup) -> None:
        """Run the autonomous schedule in ``task_group`` (on one replica: the lease holder's, cancelled with it)."""
        if self._autonomous and self._interval > 0:
            task_group.start_soon(_forever, "the autonomous-cycle loop", self._autonomous_loop, name=AUTONOMOUS_TASK)

    def request_emergency(self, emergency: Emergency) -> None:
        """Thread-safe, never blocks: ask for an emergency cycle (handed to the event loop, which starts it)."""
        if self._emergencies is None or not self._loop.call_soon(self._enqueue, emergency):
            logger.warning("emergency cycle for %s not started: the service is not running", emergency.component)

    def _enqueue(self, emergency: Emergency) -> None:
        assert self._emergencies is not None
        try:
            self._emergencies.send_nowait(emergency)
        except anyio.WouldBlock:
            logger.warning("emergency cycle for %s not started: %d alarms already wait", emergency.component,
                           EMERGENCY_QUEUE)  # fmt: skip
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            logger.warning("emergency cycle for %s not started: the server is stopping", emergency.component)

    def forget(self, known: Callable[[str], bool]) -> None:
        """Drop the emergency cycles the service no longer knows of."""
        self._emergency_cycles = {k: v for k, v in self._emergency_cycles.items() if known(v)}

    async def _autonomous_loop(self) -> None:
        while True:
            await sleep(self._clock, self._interval)
            why = self._ready()
            if why is not None:
                logger.warning("autonomous improvement cycle not started: %s", why)
                continue
            for tenant in self._autonomous:
                try:
                    await self._cycles.start(CycleRequest(tenant, "autonomous", trigger="autonomous"))
                except Exception:
                    logger.exception("could not start the autonomous improvement cycle of %s", tenant)

    async def _emergency_loop(
        self,
        send: MemoryObjectSendStream[Emergency],
        emergencies: MemoryObjectReceiveStream[Emergency],
        binding: object,
    ) -> None:
        """Start the emergency cycles handed over by :meth:`request_emergency`, one at a time, until cancelled."""
        try:
            with send, emergencies:
                async for emergency in emergencies:
                    await self._start_emergency(emergency)
        finally:
            self._loop.unbind(binding)  # an alarm after this is logged as dropped, not lost in a stopped loop

    async def _start_emergency(self, emergency: Emergency) -> None:
        try:
            await self._emergency(emergency)
        except Exception:  # one alarm's failure must not end the loop that starts the others
            logger.exception("could not start an emergency cycle for %s", emergency.component)

    async def _emergency(self, e: Emergency) -> None:
        key = busy_key(e.tenant, e.component)
        why = self._ready()
        running = self._emergency_cycles.get(key)
        if why is None and (
            self._cycles.is_busy(e.tenant, e.component) or (running is not None and self._cycles.is_running(running))
        ):
            why = "a cycle is already working on this component"
        if why is not None:
            logger.warning("emergency cycle for %s (alarm %s) not started: %s", e.component, e.alarm, why)
            last = self._skips_audited.get((*key, e.alarm), float("-inf"))
            if self._clock() - last >= SKIP_AUDIT_SECONDS:  # a flapping alarm is recorded once a minute, not per event
                self._skips_audited[(*key, e.alarm)] = self._clock()
                call = functools.partial(
                    self._audit.append, "emergency_cycle_skipped", e.component, actor=f"alarm:{e.alarm}",
                    tenant=e.tenant, detail={"alarm": e.alarm, "why": why},
                )  # fmt: skip
                await anyio.to_thread.run_sync(call)
            return
        request = CycleRequest(
            e.tenant,
            f"alarm:{e.alarm}",
            self._emergency_hours,
            1,
            risk_tolerance="high",
            trigger="emergency",
            component=e.component,
            metric=e.metric,
            reason=f"alarm {e.alarm}: {e.reason}",
        )
        cycle = await self._cycles.start(request)
        self._emergency_cycles[key] = cycle.id
        logger.warning("alarm %s started emergency improvement cycle %s for %s", e.alarm, cycle.id, e.component)


async def _forever(name: str, loop: Callable[[], Awaitable[None]]) -> None:
    """Run a service loop; should it ever raise, log it and start it again rather than stop the server."""
    while True:
        try:
            await loop()
        except Exception:
            logger.exception("%s failed; restarting it", name)
            await anyio.sleep(1.0)
