"""The one place tests poll: for conditions nothing announces.

That is another process (a server's ``/health``, moto, a file or a log line a child writes, ``/proc``) or a real-time
timer of code that takes no clock (the notifier's stall bound, the CloudWatch streamer's and publisher's intervals,
the garbage collector). Where the server announces a change, wait on it (:mod:`tests.waiting`); where time is the
cause, move a :class:`tests.fake_clock.FakeClock`. Every poll here is bounded and says what never happened.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio

POLL_SECONDS = 0.05
T = TypeVar("T")


async def eventually(
    check: Callable[[], bool | Awaitable[bool]], what: str, timeout: float = 60, every: float = POLL_SECONDS
) -> None:
    """Return once ``check()`` holds (it may be a coroutine function), asking again ``every`` seconds (longer for a
    check that costs much)."""
    try:
        with anyio.fail_after(timeout):
            while True:
                held = check()
                if inspect.isawaitable(held):
                    held = await held
                if held:
                    return
                await anyio.sleep(every)
    except TimeoutError:
        raise AssertionError(f"never happened within {timeout:g} s: {what}") from None


def eventually_sync(check: Callable[[], bool], what: str, timeout: float = 60) -> None:
    """:func:`eventually` for a test that runs no event loop."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened within {timeout:g} s: {what}")
        time.sleep(POLL_SECONDS)


def async_check(read: Callable[[], Awaitable[T]], holds: Callable[[T], bool]) -> Callable[[], Awaitable[bool]]:
    """A check for :func:`eventually`: whether what ``read()`` returns ``holds``."""

    async def check() -> bool:
        return holds(await read())

    return check
