"""Handing work from worker threads to the event loop without blocking them: the one way the services do it (the
stdio transport's reader, which must wait for the loop, uses anyio's blocking ``from_thread`` on purpose).

:class:`LoopHandOff` is bound to the running loop (from inside it); after that :meth:`LoopHandOff.call_soon` may be
called from any thread. It never blocks the caller: a stored write in a worker thread only schedules the callback,
which runs on the loop (at once when the caller is the loop itself). Before binding, after unbinding, or once the
loop has closed, the call is dropped and ``False`` returned: nobody is left to tell.
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
        self._binding: object | None = None

    def bind(self) -> object:
        """Bind to the running event loop (the server runs on asyncio, anyio's default backend); returns the binding,
        which :meth:`unbind` takes."""
        self._loop, self._thread = asyncio.get_running_loop(), threading.get_ident()
        self._binding = object()
        return self._binding

    def unbind(self, binding: object) -> None:
        """Unbind, unless another binding has replaced ``binding`` since (another lifespan of the same server)."""
        if binding is self._binding:
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
