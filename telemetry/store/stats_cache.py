"""The window aggregates of series that did not change since the last analysis, kept so that it is not read again.

An analysis asks every series of a tenant for its moments over a window split in two, but between two analyses few
series get new points. Each series row carries a ``version`` that every write of its points raises in the same
transaction (an ingest, a prune), in the database itself: so a write by another process on the same SQLite file, or
by another replica on the same PostgreSQL, is seen like this process's own. A series' points in a window are exactly
its points from the first to the newest in it; so the same version, the same first and newest timestamps and the
same split mean the same points on each side, and the cached moments are those the database would sum again.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable

from telemetry.store.records import Moments

DEFAULT_SIZE = 20_000  # entries (about 0.5 KB each): a bound on memory however many series a store holds

# (series id, recent share, recent start): how the window is split; the timestamps come with the entry
Key = tuple[int, float | None, float | None]


class StatsCache:
    """Least recently used (series, split) -> (version, first, newest, baseline, recent); thread-safe."""

    def __init__(self, size: int = DEFAULT_SIZE) -> None:
        self._size = size
        self._entries: OrderedDict[Key, tuple[int, float, float, float, Moments, Moments]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Key, version: int, first: float, newest: float, split: float) -> tuple[Moments, Moments] | None:
        """The (baseline, recent) moments stored for exactly this state of the series and split, else ``None``."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry[:4] != (version, first, newest, split):
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return entry[4], entry[5]

    def put(
        self, key: Key, version: int, first: float, newest: float, split: float, baseline: Moments, recent: Moments
    ) -> None:
        if self._size <= 0:
            return
        with self._lock:
            self._entries[key] = (version, first, newest, split, baseline, recent)
            self._entries.move_to_end(key)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)

    def moments(
        self,
        key: Key,
        version: int,
        first: float,
        newest: float,
        split: float,
        compute: Callable[[], tuple[Moments, Moments]],
    ) -> tuple[Moments, Moments]:
        """The cached (baseline, recent) for this state, else ``compute()``'s, kept for the next time."""
        found = self.get(key, version, first, newest, split)
        if found is None:
            found = compute()
            self.put(key, version, first, newest, split, *found)
        return found
