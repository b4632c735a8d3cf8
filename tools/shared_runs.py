"""Identical heavy requests waiting at once share one run.

Each request waits for a slot of the limiter; the first to get one runs the work for every request with the same key
that is waiting by then, and hands them its result (or its error). The run starts after all of them arrived, so none
gets an answer older than its question: only the queue is shortened. A request whose result came from another's run
stops waiting for a slot; one whose client goes away leaves the others waiting for theirs.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import anyio
import anyio.to_thread

T = TypeVar("T")


@dataclass(eq=False)
class _Waiter(Generic[T]):
    done: anyio.Event = field(default_factory=anyio.Event)
    value: T | None = None
    error: BaseException | None = None


class SharedRuns(Generic[T]):
    """One per kind of work (the insights of a tenant's window, ...), for the life of the server."""

    def __init__(self) -> None:
        self._waiting: dict[Hashable, list[_Waiter[T]]] = {}
        self.runs = 0  # how many times the work ran (a test counts on it)

    async def run(self, key: Hashable, work: Callable[[], T], limiter: anyio.CapacityLimiter | None) -> T:
        """The result of ``work()`` (blocking: run in a worker thread) for this request and every other request of
        ``key`` waiting when a slot of ``limiter`` frees up."""
        me: _Waiter[T] = _Waiter()
        self._waiting.setdefault(key, []).append(me)
        try:
            async with anyio.create_task_group() as group:
                group.start_soon(self._take_slot, key, me, work, limiter)
                await me.done.wait()
                group.cancel_scope.cancel()  # served by another's run: no slot needed
        finally:
            waiting = self._waiting.get(key)
            if waiting is not None and me in waiting:
                waiting.remove(me)
                if not waiting:
                    del self._waiting[key]
        if me.error is not None:
            raise me.error
        return me.value  # type: ignore[return-value]  # set with done, unless error

    async def _take_slot(
        self, key: Hashable, me: _Waiter[T], work: Callable[[], T], limiter: anyio.CapacityLimiter | None
    ) -> None:
        async with limiter if limiter is not None else nullcontext():
            if me.done.is_set():
                return
            served = self._waiting.pop(key, [])  # everyone waiting for this key now (me among them)
            self.runs += 1
            try:
                value = await anyio.to_thread.run_sync(work)
            except Exception as exc:
                for waiter in served:
                    waiter.error = exc
                    waiter.done.set()
                return
            for waiter in served:
                waiter.value = value
                waiter.done.set()
