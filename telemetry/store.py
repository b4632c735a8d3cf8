"""The telemetry store: metric points, log events and events, per tenant, behind the :class:`TelemetryStore` Protocol.

Records are plain slotted dataclasses (not pydantic models): ingest paths move hundreds of thousands of them a second.
The SQLite implementation lives in :mod:`telemetry.sqlite_store`; a server database can implement the same Protocol.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

Dimensions = Mapping[str, str]


@dataclass(frozen=True, slots=True)
class MetricPoint:
    """One value of one series at one time. A series is (tenant, name, dimensions)."""

    tenant: str
    name: str
    timestamp: float
    value: float
    dimensions: Dimensions = field(default_factory=dict)
    unit: str | None = None
    source: str = "agent"


@dataclass(frozen=True, slots=True)
class LogRecord:
    """One log line."""

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
        self, tenant: str, *, name: str | None = None, start: float | None = None, end: float | None = None
    ) -> list[Series]:
        """Series of a tenant (optionally one metric name) with their points in [start, end]."""
        ...

    def logs(
        self, tenant: str, *, start: float | None = None, end: float | None = None, limit: int = 10_000
    ) -> list[LogRecord]:
        """Log records of a tenant in [start, end], oldest first, at most ``limit``."""
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
