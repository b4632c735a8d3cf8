"""The telemetry store: metric points, log events and events, per tenant, behind the :class:`TelemetryStore` Protocol.

Records are plain slotted dataclasses (not pydantic models): ingest paths move hundreds of thousands of them a second.
The SQLite implementation lives in :mod:`.sqlite_store`; a server database can implement the same Protocol.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

Dimensions = Mapping[str, str]


@dataclass(slots=True)
class MetricPoint:
    """One value of one series at one time. A series is (tenant, name, dimensions).

    Treated as immutable, but not ``frozen``: a frozen dataclass costs four times as much to build, and ingest
    builds hundreds of thousands a second.
    """

    tenant: str
    name: str
    timestamp: float
    value: float
    dimensions: Dimensions = field(default_factory=dict)
    unit: str | None = None
    source: str = "agent"


@dataclass(slots=True)
class LogRecord:
    """One log line (treated as immutable; not ``frozen``, for the same reason as :class:`MetricPoint`)."""

    tenant: str
    timestamp: float
    message: str
    level: str = "INFO"
    component: str | None = None
    attributes: Mapping[str, Any] = field(default_factory=dict)
    source: str = "agent"


@dataclass(frozen=True, slots=True)
class EventRecord:
    """One event (an alarm state change, a deployment, an agent's note). ``dedup_key`` makes re-delivery harmless."""

    tenant: str
    timestamp: float
    type: str
    detail: Mapping[str, Any] = field(default_factory=dict)
    source: str = "agent"
    dedup_key: str | None = None


@dataclass(frozen=True, slots=True)
class SeriesKey:
    """Identifies one metric series."""

    tenant: str
    name: str
    dimensions: tuple[tuple[str, str], ...]
    unit: str | None
    source: str


@dataclass(frozen=True, slots=True)
class Series:
    """A series with its points in a time window, oldest first."""

    key: SeriesKey
    timestamps: list[float]
    values: list[float]


@dataclass(frozen=True, slots=True)
class Moments:
    """Sums over a set of points for means, variances and a least-squares slope without the points themselves.

    ``y`` is a value minus the series' ``value_origin`` and ``x`` a timestamp minus its ``time_origin`` (see
    :class:`SeriesStats`): shifting keeps the sums of squares small, so variances do not cancel catastrophically.
    """

    count: int = 0
    sum_y: float = 0.0
    sum_yy: float = 0.0
    sum_x: float = 0.0
    sum_xx: float = 0.0
    sum_xy: float = 0.0

    def __add__(self, other: Moments) -> Moments:
        return Moments(
            self.count + other.count,
            self.sum_y + other.sum_y,
            self.sum_yy + other.sum_yy,
            self.sum_x + other.sum_x,
            self.sum_xx + other.sum_xx,
            self.sum_xy + other.sum_xy,
        )


@dataclass(frozen=True, slots=True)
class SeriesStats:
    """Aggregates of one series over a window split in two: ``baseline`` before the split, ``recent`` from it on.

    The origins are the first point of the window (value and timestamp); with no point in the window everything but
    ``key`` is zero.
    """

    key: SeriesKey
    baseline: Moments
    recent: Moments
    value_origin: float = 0.0
    time_origin: float = 0.0
    last_timestamp: float = 0.0
    tail_mean: float = 0.0  # mean of the newest ``tail`` values

    @property
    def count(self) -> int:
        return self.baseline.count + self.recent.count


def split_time(first: float, last: float, recent_share: float) -> float:
    """Where the newest ``recent_share`` of the span from ``first`` to ``last`` begins."""
    return last - recent_share * (last - first)


@dataclass(frozen=True, slots=True)
class StoreCounts:
    """How much the store holds."""

    series: int
    points: int
    logs: int
    events: int


class TelemetryStore(Protocol):
    """Where telemetry lives. Methods block: async callers run them in a worker thread.

    Every write is one transaction: when a write method returns, its whole batch is durable against a crash of the
    process; when it raises, none of it was stored.
    """

    def add_metrics(self, points: Sequence[MetricPoint]) -> int:
        """Store points (a point at an existing (series, timestamp) replaces it); returns how many were written."""
        ...

    def add_logs(self, logs: Sequence[LogRecord]) -> int:
        """Store log records; returns how many were written."""
        ...

    def add_events(self, events: Sequence[EventRecord]) -> int:
        """Store events, skipping any whose (tenant, dedup_key) is already stored; returns how many were new."""
        ...

    def series(
        self,
        tenant: str,
        *,
        name: str | None = None,
        start: float | None = None,
        end: float | None = None,
        dimensions: Dimensions | None = None,
    ) -> list[Series]:
        """Series of a tenant (optionally one metric name, and with ``name``, the one series of ``dimensions``) with
        their points in [start, end]."""
        ...

    def series_stats(
        self,
        tenant: str,
        *,
        name: str | None = None,
        start: float,
        end: float,
        recent_start: float | None = None,
        tail: int = 12,
        recent_share: float | None = None,
    ) -> list[SeriesStats]:
        """Every series of a tenant (optionally one metric name), ordered like :meth:`series`, with the aggregates of
        its points in [start, recent_start) and [recent_start, end] and the mean of its newest ``tail`` values.
        With ``recent_share`` instead, each series is split at :func:`split_time` of its own first and newest points
        in the window: the newest share of the history it has there.
        """
        ...

    def count_outside(self, key: SeriesKey, *, start: float, end: float, low: float, high: float) -> int:
        """How many points of one series in [start, end] lie below ``low`` or above ``high``."""
        ...

    def logs(
        self,
        tenant: str,
        *,
        start: float | None = None,
        end: float | None = None,
        limit: int = 10_000,
        newest: bool = False,
    ) -> list[LogRecord]:
        """Log records of a tenant in [start, end], oldest first, at most ``limit``: the oldest ones, or with
        ``newest`` the newest ones."""
        ...

    def events(
        self,
        tenant: str,
        *,
        type: str | None = None,
        start: float | None = None,
        end: float | None = None,
        limit: int = 1_000,
    ) -> list[EventRecord]:
        """Events of a tenant in [start, end], newest first, at most ``limit``."""
        ...

    def last_timestamp(self, tenant: str, name: str, dimensions: Dimensions) -> float | None:
        """The newest point of one series (for incremental fetching), or None."""
        ...

    def prune(self, *, older_than: float) -> int:
        """Delete everything older than ``older_than``; returns how many rows went."""
        ...

    def counts(self, tenant: str | None = None) -> StoreCounts:
        """What the store holds, for one tenant or all."""
        ...

    def close(self) -> None:
        """Release the database."""
        ...
