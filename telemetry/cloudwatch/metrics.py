"""Metrics by GetMetricData, in batches of up to 500 queries, incrementally from the last point stored."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from telemetry.cloudwatch.config import CloudWatchConfig, MetricWatch
from telemetry.cloudwatch.tenancy import tenant_for
from telemetry.store.records import MetricPoint, TelemetryStore

MAX_QUERIES = 500
TENANT_DIMENSION = "TenantId"
SOURCE = "cloudwatch"


@dataclass(frozen=True, slots=True)
class Target:
    """One concrete series to fetch."""

    tenant: str
    watch: MetricWatch
    dimensions: dict[str, str]

    @property
    def stored_dimensions(self) -> dict[str, str]:
        return {**self.dimensions, "Namespace": self.watch.namespace}


class MetricFetcher:
    """Blocking; runs in a worker thread. ``call`` wraps each AWS call (retries, breaker accounting)."""

    def __init__(self, config: CloudWatchConfig, store: TelemetryStore, clock: Callable[[], float] = time.time):
        self._config = config
        self._store = store
        self._clock = clock
        self._targets: list[Target] = []
        self._discovered_at = float("-inf")

    def targets(self, cw: Any, call: Callable[[Callable[[], Any]], Any]) -> list[Target]:
        """Concrete series: configured ones, plus every dimension set ListMetrics finds (refreshed periodically)."""
        if self._clock() - self._discovered_at < self._config.discovery_refresh_seconds:
            return self._targets
        found: list[Target] = []
        for watch in self._config.metrics:
            if watch.dimensions is not None:
                found.append(self._target(watch, watch.dimensions))
                continue
            token: str | None = None
            while True:
                kwargs: dict[str, Any] = {"Namespace": watch.namespace, "MetricName": watch.metric_name}
                if token:
                    kwargs["NextToken"] = token
                page = call(lambda kw=kwargs: cw.list_metrics(**kw))  # type: ignore[misc]
                for metric in page.get("Metrics", []):
                    dims = {d["Name"]: d["Value"] for d in metric.get("Dimensions", [])}
                    found.append(self._target(watch, dims))
                token = page.get("NextToken")
                if not token:
                    break
        # One query per series, even if a listing repeats one (moto does; a paginated listing can).
        unique = {(t.watch.namespace, t.watch.metric_name, tuple(sorted(t.dimensions.items()))): t for t in found}
        self._targets, self._discovered_at = list(unique.values()), self._clock()
        return self._targets

    def _target(self, watch: MetricWatch, dims: dict[str, str]) -> Target:
        return Target(tenant_for(dims.get(TENANT_DIMENSION), self._config.default_tenant), watch, dims)

    def fetch(self, cw: Any, call: Callable[[Callable[[], Any]], Any]) -> int:
        """Fetch new points of every target and store them; returns how many were stored (new or changed)."""
        targets = self.targets(cw, call)
        now = self._clock()
        # Series that start from the same point go in one batch: a series with nothing stored yet (the full
        # look-back) must not drag the up-to-date ones back with it. Period buckets are aligned to the start
        # time: align it, so a re-fetched bucket keeps its timestamp (and replaces the stored point).
        groups: dict[float, list[Target]] = defaultdict(list)
        for target in targets:
            period = target.watch.period
            groups[self._since(target, now) // period * period].append(target)
        stored = 0
        for since, group in sorted(groups.items()):
            for start in range(0, len(group), MAX_QUERIES):
                batch = group[start : start + MAX_QUERIES]
                points = self._unstored(self._fetch_batch(cw, call, batch, since, now), since, now)
                if points:
                    stored += self._store.add_metrics(points)
        return stored

    def _unstored(self, points: list[MetricPoint], since: float, now: float) -> list[MetricPoint]:
        """The points the store does not hold as they are. Each fetch starts at the bucket of the last point stored
        (a bucket still filling gets its final value later), so that point comes back every poll: stored again, it
        would count as ingested and reach the anomaly detectors twice. A bucket whose value changed is kept."""
        held: dict[tuple[str, str, tuple[tuple[str, str], ...]], dict[float, float]] = {}
        for tenant, name in {(p.tenant, p.name) for p in points}:
            for series in self._store.series(tenant, name=name, start=since, end=now):
                held[(tenant, name, series.key.dimensions)] = dict(zip(series.timestamps, series.values, strict=True))
        return [
            p
            for p in points
            if held.get((p.tenant, p.name, tuple(sorted(p.dimensions.items()))), {}).get(p.timestamp) != p.value
        ]

    def _since(self, target: Target, now: float) -> float:
        last = self._store.last_timestamp(target.tenant, target.watch.metric_name, target.stored_dimensions)
        return last if last is not None else now - self._config.metric_lookback_seconds

    def _fetch_batch(
        self, cw: Any, call: Callable[[Callable[[], Any]], Any], batch: list[Target], since: float, now: float
    ) -> list[MetricPoint]:
        queries = [
            {
                "Id": f"q{i}",
                "MetricStat": {
                    "Metric": {
                        "Namespace": t.watch.namespace,
                        "MetricName": t.watch.metric_name,
                        "Dimensions": [{"Name": k, "Value": v} for k, v in sorted(t.dimensions.items())],
                    },
                    "Period": t.watch.period,
                    "Stat": t.watch.stat,
                },
                "ReturnData": True,
            }
            for i, t in enumerate(batch)
        ]
        points: list[MetricPoint] = []
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {
                "MetricDataQueries": queries,
                "StartTime": datetime.fromtimestamp(since, UTC),
                "EndTime": datetime.fromtimestamp(now, UTC),
                "ScanBy": "TimestampAscending",
            }
            if token:
                kwargs["NextToken"] = token
            page = call(lambda kw=kwargs: cw.get_metric_data(**kw))  # type: ignore[misc]
            for result in page.get("MetricDataResults", []):
                target = batch[int(result["Id"][1:])]
                for ts, value in zip(result.get("Timestamps", []), result.get("Values", []), strict=False):
                    points.append(
                        MetricPoint(
                            target.tenant,
                            target.watch.metric_name,
                            ts.timestamp(),
                            float(value),
                            target.stored_dimensions,
                            None,
                            SOURCE,
                        )
                    )
            token = page.get("NextToken")
            if not token:
                return points
