"""The stores of a server's settings, on its backend (SQLite files or PostgreSQL), for a test to seed or read them
before or after the server runs — so that a test says what it stores, not where."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Protocol, TypeVar

from server.databases import Databases
from server.settings import Settings


class Closing(Protocol):
    def close(self) -> None: ...


S = TypeVar("S", bound=Closing)


@contextmanager
def stores_of(settings: Settings) -> Iterator[Databases]:
    """The databases ``settings`` name, connected as the server connects them; closed on exit."""
    databases = Databases(settings)
    with ExitStack() as closing:
        databases.connect(closing.callback)
        yield databases


@contextmanager
def store_of(settings: Settings, which: Callable[[Databases], S]) -> Iterator[S]:
    """One store of ``settings`` (``store_of(settings, Databases.telemetry)``), closed on exit."""
    with stores_of(settings) as databases:
        store = which(databases)
        try:
            yield store
        finally:
            store.close()


def on_postgresql(settings: Settings) -> bool:
    return settings.database_url is not None
