"""Handing work from worker threads to the event loop: the one way the server does it.

:class:`LoopHandOff` is bound to the running loop once (from inside it); after that :meth:`LoopHandOff.call_soon`
may be called from any thread. It never blocks the caller: a stored write in a worker thread only schedules the
callback, which runs on the loop (at once when the caller is the loop itself). Before binding, or once the loop has
closed, the call is dropped and ``False`` returned: nobody is left to tell.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from typing import TypeVarTuple, Unpack

Ts = TypeVarTuple("Ts")


class LoopHandOff:
    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: int | None = None

    def bind(self) -> None:
        """Bind to the running event loop (the server runs on asyncio, anyio's default backend)."""
        self._loop, self._thread = asyncio.get_running_loop(), threading.get_ident()

    def unbind(self) -> None:
        self._loop = self._thread = None

    def call_soon(self, callback: Callable[[Unpack[Ts]], object], *args: *Ts) -> bool:
        """Run ``callback(*args)`` on the loop; False when there is no loop to run it."""
        loop = self._loop
        if loop is None:
            return False
        if threading.get_ident() == self._thread:
            callback(*args)
            return True
        with contextlib.suppress(RuntimeError):  # the loop is closed
            loop.call_soon_threadsafe(callback, *args)
            return True
        return False
