"""Time as a seam: what the telemetry services read the time from and wait on.

A ``Clock`` is called for the time now (seconds since the epoch, as ``time.time``) and is awaited to sleep until a
moment of its own time. Services take one so that tests drive time forward instead of sleeping through it; the
server passes one clock to both ``telemetry`` and ``generators`` (each package declares the protocol it needs).
"""

from __future__ import annotations

import time
from typing import Protocol

import anyio


class Clock(Protocol):
    def __call__(self) -> float:
        """The time now, in seconds since the epoch."""
        ...

    async def sleep_until(self, deadline: float) -> None:
        """Return once the time is ``deadline`` or later (at once if it already is)."""
        ...


class SystemClock:
    """The real time: ``time.time`` and ``anyio.sleep``."""

    def __call__(self) -> float:
        return time.time()

    async def sleep_until(self, deadline: float) -> None:
        await anyio.sleep(max(0.0, deadline - time.time()))


async def sleep(clock: Clock, seconds: float) -> None:
    """Sleep ``seconds`` of the clock's time."""
    await clock.sleep_until(clock() + seconds)
