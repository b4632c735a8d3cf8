"""Waiting for the server without sleeping: on its change notifications where it sends them, on a fake clock where
time is the cause (:mod:`tests.fake_clock`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from mcp import Client

from tests.conftest import call
from tools.improvement import ACTIVE_URI

Cycle = dict[str, Any]


async def cycle_when(client: Client, cycle_id: str, done: Callable[[Cycle], bool], timeout: float = 60) -> Cycle:
    """``get_improvement_cycle`` once its answer satisfies ``done``: read again on each change of
    ``improvements://active`` (every write of a cycle or candidate is one), never on a timer."""
    return await when_active_changes(client, lambda: _cycle(client, cycle_id), done, timeout)


async def when_active_changes(
    client: Client, read: Callable[[], Awaitable[Any]], done: Callable[[Any], bool], timeout: float = 60
) -> Any:
    """``read()`` once its answer satisfies ``done``, read again on each change of ``improvements://active``."""
    with anyio.fail_after(timeout):
        async with client.listen(resource_subscriptions=[ACTIVE_URI]) as changes:
            changed = aiter(changes)
            while not done(found := await read()):  # listening before the read: no change is missed in between
                await anext(changed)
    return found


async def _cycle(client: Client, cycle_id: str) -> Cycle:
    return await call(client, "get_improvement_cycle", {"cycle_id": cycle_id})


def finished(cycle: Cycle) -> bool:
    return bool(cycle["status"] != "running")


def first_candidate_not_in(*statuses: str) -> Callable[[Cycle], bool]:
    """The cycle's first candidate exists and has left ``statuses``."""
    return lambda cycle: bool(cycle["candidates"]) and cycle["candidates"][0]["status"] not in statuses


def first_candidate_in(*statuses: str) -> Callable[[Cycle], bool]:
    return lambda cycle: bool(cycle["candidates"]) and cycle["candidates"][0]["status"] in statuses


class Heard(list[Any]):
    """What a client heard (notifications, events), appended by its message handler on the event loop; a test waits
    until the list satisfies a condition, woken by each append instead of polling it."""

    def __init__(self) -> None:
        super().__init__()
        self._changed = anyio.Event()

    def append(self, item: Any) -> None:
        super().append(item)
        self._changed.set()
        self._changed = anyio.Event()

    async def until(self, done: Callable[[list[Any]], bool], timeout: float = 10) -> None:
        with anyio.fail_after(timeout):
            while not done(self):
                await self._changed.wait()
