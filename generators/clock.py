"""Time as a seam: what the improvement services read the time from and wait on.

A ``Clock`` is called for the time now (seconds since the epoch, as ``time.time``) and is awaited to sleep until a
moment of its own time. The server passes one clock to ``telemetry`` and ``generators`` alike (``telemetry.clock``
has the system's); tests pass one they move. Each package declares the protocol it needs, as they may not import
each other.
"""

from __future__ import annotations

from typing import Protocol


class Clock(Protocol):
    def __call__(self) -> float:
        """The time now, in seconds since the epoch."""
        ...

    async def sleep_until(self, deadline: float) -> None:
        """Return once the time is ``deadline`` or later (at once if it already is)."""
        ...


async def sleep(clock: Clock, seconds: float) -> None:
    """Sleep ``seconds`` of the clock's time."""
    await clock.sleep_until(clock() + seconds)
