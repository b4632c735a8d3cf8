"""A clock that tests move by hand: services sleep on it, and a test advances it instead of sleeping through real
time. Waiting for a service to park on the clock again is how a test knows that the service's step is done."""

from __future__ import annotations

import threading
import time

import anyio
import anyio.lowlevel

PARK_TIMEOUT = 30.0


class FakeClock:
    """Satisfies ``telemetry.clock.Clock`` and ``generators.clock.Clock``. Starts at the real time (timestamps look
    real) and moves only by :meth:`advance`. Reading it is thread-safe; sleeping and advancing happen on the event
    loop."""

    def __init__(self, start: float | None = None) -> None:
        self._now = time.time() if start is None else start
        self._lock = threading.Lock()
        self._sleepers: list[tuple[float, anyio.Event, str]] = []  # deadline, wake-up, the sleeping task's name
        self._parked: list[tuple[int, str | None, anyio.Event]] = []

    def __call__(self) -> float:
        with self._lock:
            return self._now

    def sleepers(self, task: str | None = None) -> int:
        """How many tasks (named ``task``, or any) are sleeping on the clock now."""
        return sum(1 for entry in self._sleepers if task is None or entry[2] == task)

    async def sleep_until(self, deadline: float) -> None:
        if deadline <= self():
            await anyio.lowlevel.checkpoint()
            return
        woken = anyio.Event()
        entry = (deadline, woken, anyio.get_current_task().name or "")
        self._sleepers.append(entry)
        self._tell_parked()
        try:
            await woken.wait()
        finally:
            if entry in self._sleepers:  # cancelled while asleep
                self._sleepers.remove(entry)

    def advance(self, seconds: float) -> None:
        """Move the time forward and wake every sleeper whose moment has come."""
        assert seconds >= 0, "time does not go backwards"
        with self._lock:
            self._now += seconds
            now = self._now
        due = [entry for entry in self._sleepers if entry[0] <= now]
        for entry in due:
            self._sleepers.remove(entry)
            entry[1].set()

    async def parked(self, task: str | None = None, count: int = 1) -> None:
        """Return once at least ``count`` tasks (named ``task``, or any) sleep on the clock. Bounded: a task that never
        parks fails the test after ``PARK_TIMEOUT`` seconds instead of hanging it."""
        if self.sleepers(task) >= count:
            return
        reached = anyio.Event()
        self._parked.append((count, task, reached))
        with anyio.fail_after(PARK_TIMEOUT):
            await reached.wait()

    async def step(self, seconds: float, task: str) -> None:
        """Advance, then wait until the task named ``task`` sleeps on the clock again: the loop woken by this step has
        done its work and gone back to sleep."""
        self.advance(seconds)
        await anyio.lowlevel.checkpoint()
        await self.parked(task)

    def _tell_parked(self) -> None:
        for entry in [p for p in self._parked if p[0] <= self.sleepers(p[1])]:
            self._parked.remove(entry)
            entry[2].set()


class OffsetClock:
    """The real time shifted by ``offset`` seconds (a server that runs as if it were then)."""

    def __init__(self, offset: float) -> None:
        self.offset = offset

    def __call__(self) -> float:
        return time.time() + self.offset

    async def sleep_until(self, deadline: float) -> None:
        await anyio.sleep(max(0.0, deadline - self()))
