"""Log lines that a client can cause must not be able to flood the log.

A hostile client can make the HTTP stack log once per bad request or per failed ``accept()`` (asyncio logs
``socket.accept() out of system resource`` for every attempt while descriptors are exhausted — hundreds of thousands
of lines a minute). :class:`FloodFilter` lets the first few records of each kind through per window and folds the rest
into one "suppressed" line; :func:`install_loop_handler` routes the event loop's errors through it and counts failed
accepts for ``/metrics``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)
ACCEPT_ERROR = "socket.accept() out of system resource"
MAX_KINDS = 256  # distinct message kinds tracked per window (more kinds are counted as one)
KIND_PREFIX = 48  # records are of one kind when their format strings start alike (f-strings differ in their tails)


class FloodFilter(logging.Filter):
    """At most ``burst`` records per (logger, message format) every ``window`` seconds from the loggers under
    ``prefixes``; the rest are counted and reported once when the window turns over. Put on a handler, it sees the
    records of whole logger trees (a logger's own filters see only that logger's records)."""

    def __init__(
        self,
        prefixes: tuple[str, ...],
        burst: int = 5,
        window: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self._prefixes = prefixes
        self._burst = burst
        self._window = window
        self._clock = clock
        self._started = clock()
        self._seen: dict[tuple[str, str], int] = {}
        self.suppressed = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(self._prefixes):
            return True
        now = self._clock()
        if now - self._started >= self._window:
            self._turn_over(now)
        kind = (record.name, str(record.msg)[:KIND_PREFIX])
        if kind not in self._seen and len(self._seen) >= MAX_KINDS:
            kind = ("*", "*")
        count = self._seen.get(kind, 0) + 1
        self._seen[kind] = count
        if count <= self._burst:
            return True
        self.suppressed += 1
        return False

    def _turn_over(self, now: float) -> None:
        dropped = {kind: n - self._burst for kind, n in self._seen.items() if n > self._burst}
        self._seen.clear()
        self._started = now
        for (name, message), n in sorted(dropped.items())[:10]:
            logger.warning("%d more log line(s) like %r from %s were suppressed in the last minute", n, message, name)


def guard_handlers(flood: FloodFilter) -> None:
    """Put ``flood`` on every handler of the root logger (where the server's stderr log is written)."""
    for handler in logging.getLogger().handlers:
        if flood not in handler.filters:
            handler.addFilter(flood)


def install_loop_handler(loop: asyncio.AbstractEventLoop, on_accept_error: Callable[[], None]) -> None:
    """Send the loop's error reports through the ``asyncio`` logger (where a :class:`FloodFilter` can hold them) and
    count each failed ``accept()``; the loop's own handler otherwise stays as it is."""

    def handle(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if context.get("message") == ACCEPT_ERROR:
            on_accept_error()
            exc = context.get("exception")
            logging.getLogger("asyncio").error(
                "%s: %s; new connections wait until descriptors free up", ACCEPT_ERROR, exc
            )
            return
        loop.default_exception_handler(context)

    loop.set_exception_handler(handle)
