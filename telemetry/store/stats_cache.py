"""The window aggregates of series that did not change since the last analysis, kept so that they are not read again.

An analysis asks every series of a tenant for its moments over a window split in two, but between two analyses few
series get new points. Each series row carries a ``version`` that every write of its points raises in the same
transaction (an ingest, a prune), in the database itself: so a write by another process on the same SQLite file, or
by another replica on the same PostgreSQL, is seen like this process's own.

A series' points in a window are its points from the first to the newest in it. An entry keeps, beside them, the
timestamps of the series' points just outside (``before``, ``after``; infinite when there are none): while the
version is the same, a later window that starts in ``(before, first]`` and ends in ``[newest, after)`` holds exactly
the same points, so the entry answers it without a query — the window's first point, its newest ones, where it splits
and the moments on each side are what the database would give again.
"""

from __future__ import annotations

import functools
import json
import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from statistics import fmean
from typing import Any

from telemetry.store import rollups
from telemetry.store.records import Moments, SeriesKey, SeriesStats, split_time

DEFAULT_SIZE = 10_000  # entries (about 0.85 KB each, 8.5 MB in all): a bound however many series a store holds

# (series id, recent share, recent start, tail): how a window is split and how many newest points it averages
Key = tuple[int, float | None, float | None, int]
Rows = Callable[[str, Sequence[Any]], list[Any]]  # run a query with positional parameters, return its rows


@dataclass(frozen=True, slots=True)
class Window:
    """What one series read for a window: its points there go from ``first`` to ``newest``."""

    version: int
    before: float  # the series' last point before ``first`` (-inf: none)
    first: tuple[float, float]  # (timestamp, value)
    newest: float  # the newest point's timestamp
    after: float  # the series' first point after the newest (+inf: none)
    baseline: Moments
    recent: Moments
    tail_mean: float  # the mean of the newest points' values (at most ``tail`` of them)

    def holds(self, version: int, start: float, end: float) -> bool:
        """Whether the window [start, end] of the series at ``version`` has exactly these points."""
        same_points = self.before < start <= self.first[0] and self.newest <= end < self.after
        return same_points and version == self.version

    def stats(self, key: SeriesKey) -> SeriesStats:
        (t0, v0), last = self.first, self.newest
        return SeriesStats(key, self.baseline, self.recent, v0, t0, last, self.tail_mean)


@dataclass(frozen=True, slots=True)
class Queries:
    """A backend's SQL for :func:`read_window` (its parameter style; positional parameters in this order)."""

    first: str  # (series_id, start, end) -> the window's first (ts, value)
    newest: str  # (series_id, start, end, tail) -> its newest (ts, value), newest first
    before: str  # (series_id, ts) -> MAX(ts) below ts
    after: str  # (series_id, ts) -> MIN(ts) above ts
    moments: tuple[str, str, str]  # rollups.queries(...)


def read_window(
    rows: Rows,
    fetch: rollups.Fetch,
    sql: Queries,
    series_id: int,
    version: int,
    *,
    start: float,
    end: float,
    recent_start: float | None,
    recent_share: float | None,
    tail: int,
) -> Window | None:
    """Read one series' window [start, end] from the database (``None``: no point in it), split at ``recent_start`` or
    where its newest ``recent_share`` begins."""
    found = rows(sql.first, (series_id, start, end))
    if not found:
        return None
    first = (float(found[0][0]), float(found[0][1]))
    newest = tuple((float(ts), float(value)) for ts, value in rows(sql.newest, (series_id, start, end, tail)))
    split = recent_start if recent_share is None else split_time(first[0], newest[0][0], recent_share)
    if split is None:
        raise ValueError("series_stats needs recent_start or recent_share")
    baseline, recent = rollups.split_moments(fetch, sql.moments, series_id, start, split, end, first)
    before = rows(sql.before, (series_id, first[0]))[0][0]
    after = rows(sql.after, (series_id, newest[0][0]))[0][0]
    return Window(
        version,
        -math.inf if before is None else float(before),
        first,
        newest[0][0],
        math.inf if after is None else float(after),
        baseline,
        recent,
        fmean(value for _, value in reversed(newest)),
    )


def _series_key(tenant: str, name: str, dims: str, unit: str | None, source: str) -> SeriesKey:
    """The key of a series row (``dims`` as stored: a JSON object)."""
    return SeriesKey(tenant, name, tuple(sorted(json.loads(dims).items())), unit, source)


class StatsCache:
    """Least recently used (series, split, tail) -> :class:`Window`; thread-safe."""

    def __init__(self, size: int = DEFAULT_SIZE) -> None:
        self._size = size
        self._entries: OrderedDict[Key, Window] = OrderedDict()
        self._lock = threading.Lock()
        # a series row's key, remembered: no JSON decoded per series and analysis
        self._key = functools.lru_cache(maxsize=max(size, 1))(_series_key)
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Key, version: int, start: float, end: float) -> Window | None:
        """The window kept for ``key`` if it holds for this version and window, else ``None``."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or not entry.holds(version, start, end):
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return entry

    def put(self, key: Key, window: Window) -> None:
        if self._size <= 0:
            return
        with self._lock:
            self._entries[key] = window
            self._entries.move_to_end(key)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)

    def window(
        self, key: Key, version: int, start: float, end: float, read: Callable[[], Window | None]
    ) -> Window | None:
        """The kept window if it holds, else ``read()``'s, kept for the next time."""
        found = self.get(key, version, start, end)
        if found is None:
            found = read()
            if found is not None:
                self.put(key, found)
        return found

    def series_stats(
        self,
        tenant: str,
        series: Iterable[Sequence[Any]],
        rows: Rows,
        fetch: rollups.Fetch,
        sql: Queries,
        *,
        start: float,
        end: float,
        recent_start: float | None,
        recent_share: float | None,
        tail: int,
    ) -> list[SeriesStats]:
        """:meth:`TelemetryStore.series_stats` of the ``series`` rows (id, name, dims, unit, source, version), each from
        its kept window or read with ``rows`` and ``fetch`` (one connection of the backend, ``sql`` in its style)."""
        out: list[SeriesStats] = []
        for series_id, name, dims, unit, source, version in series:
            key = self._key(tenant, name, dims, unit, source)
            read = partial(
                read_window, rows, fetch, sql, series_id, version, start=start, end=end,
                recent_start=recent_start, recent_share=recent_share, tail=tail,
            )  # fmt: skip
            found = self.window((series_id, recent_share, recent_start, tail), version, start, end, read)
            out.append(SeriesStats(key, Moments(), Moments()) if found is None else found.stats(key))
        return out
