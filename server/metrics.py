"""Prometheus metrics of one server: ``GET /metrics`` on the HTTP transport, in the text exposition format.

Counters that move with events (tool calls with their latency, monitoring events raised, telemetry items stored)
are updated as they happen; figures that live elsewhere (CloudWatch breakers, improvement cycles and their outcomes,
code generation by the LLM) are read at scrape time. One registry per server (nothing global), so two servers in one
process never mix their figures.

Label values that callers feed (tool names, tenants, telemetry sources) are bounded: each label takes at most a fixed
number of distinct values, the first ones seen, and later newcomers are counted under ``other``. Every series
costs memory until restart and bytes on every scrape, so a caller must not be able to add them without end.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Final

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector

from telemetry.monitoring.events import MonitoringEvent

if TYPE_CHECKING:
    from tools.services import Services

CONTENT_TYPE = CONTENT_TYPE_LATEST
BREAKER_VALUE = {"closed": 0.0, "half_open": 1.0, "open": 2.0}
LATENCY_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
OTHER: Final = "other"
MAX_TOOLS: Final = 200  # the server has ~30 tools; unknown names arrive as one, "(unknown tool)"
MAX_TENANTS: Final = 100
MAX_SOURCES: Final = 50
MAX_LABEL_CHARS: Final = 100


class LabelValues:
    """The values one label may take: the first ``limit`` distinct ones seen (and ``known``), else ``other``.
    Thread-safe: stored-telemetry hooks run on worker threads."""

    def __init__(self, limit: int, known: Iterable[str] = ()) -> None:
        self._limit = limit
        self._seen = set(known)
        self._lock = threading.Lock()

    def __call__(self, value: str) -> str:
        if value in self._seen:
            return value
        with self._lock:
            if len(self._seen) >= self._limit or len(value) > MAX_LABEL_CHARS:
                return OTHER
            self._seen.add(value)
        return value


class ServerMetrics:
    """The server's metrics; ``services`` is set by the lifespan (scrape-time figures need it)."""

    def __init__(self, default_tenant: str = "default") -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.services: Services | None = None
        self.tool_calls = Counter(
            "mcp_tool_calls", "Tool calls by tool and outcome (ok or error).", ["tool", "outcome"],
            registry=self.registry,
        )  # fmt: skip
        self.tool_seconds = Histogram(
            "mcp_tool_call_duration_seconds", "Tool call latency by tool.", ["tool"], buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )  # fmt: skip
        self.monitoring_events = Counter(
            "monitoring_events", "Monitoring events raised, by type and severity.", ["type", "severity"],
            registry=self.registry,
        )  # fmt: skip
        self.telemetry_items = Counter(
            "telemetry_items_ingested", "Telemetry items stored, by kind (metric, log, event), source and tenant.",
            ["kind", "source", "tenant"], registry=self.registry,
        )  # fmt: skip
        self._last_event_id = 0
        self._tools = LabelValues(MAX_TOOLS)
        self._tenants = LabelValues(MAX_TENANTS, [default_tenant])
        self._sources = LabelValues(MAX_SOURCES)
        self.registry.register(_LiveCollector(self))

    def tool_call(self, tool: str, failed: bool, seconds: float) -> None:
        label = self._tools(tool)
        self.tool_calls.labels(label, "error" if failed else "ok").inc()
        self.tool_seconds.labels(label).observe(seconds)

    async def on_monitoring_events(self, events: list[MonitoringEvent]) -> None:
        """Monitor listener: count each event once, when it is raised (updates keep their id)."""
        for event in events:
            if event.id > self._last_event_id:
                self.monitoring_events.labels(event.event_type, event.severity).inc()
        self._last_event_id = max([self._last_event_id, *(e.id for e in events)])

    def on_stored(self, kind: str, tally: Mapping[tuple[str, str], int]) -> None:
        """Telemetry store hook: how many items of ``kind`` were stored per (source, tenant)."""
        for (source, tenant), count in tally.items():
            self.telemetry_items.labels(kind, self._sources(source), self._tenants(tenant)).inc(count)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _LiveCollector(Collector):
    """Figures read from the services at scrape time."""

    def __init__(self, metrics: ServerMetrics) -> None:
        self._metrics = metrics

    def describe(self) -> Iterator[Metric]:
        return iter(())  # collected fresh each scrape

    def collect(self) -> Iterator[Metric]:
        svc = self._metrics.services
        if svc is None:
            return
        yield from _breakers(svc)
        yield from _improvements(svc)
        yield from _generation(svc)
        yield from _detection(svc)


def _breakers(svc: Services) -> Iterator[Metric]:
    gauge = GaugeMetricFamily(
        "cloudwatch_breaker_state", "CloudWatch circuit breaker per source: 0 closed, 1 half open, 2 open.",
        labels=["source"],
    )  # fmt: skip
    if svc.cloudwatch is not None:
        for health in svc.cloudwatch.health():
            if health.enabled and health.breaker is not None:
                gauge.add_metric([health.name], BREAKER_VALUE[health.breaker.state])
    yield gauge


def _improvements(svc: Services) -> Iterator[Metric]:
    tallies = svc.improvements.store.tallies()
    started = CounterMetricFamily("improvement_cycles_started", "Improvement cycles started (all time).")
    started.add_metric([], sum(tallies["cycles"].values()))
    finished = CounterMetricFamily(
        "improvement_cycles_completed", "Improvement cycles that ended, by status.", labels=["status"]
    )
    for status in ("completed", "no_improvement", "failed", "nothing_to_do", "interrupted"):
        finished.add_metric([status], tallies["cycles"].get(status, 0))
    outcomes = CounterMetricFamily(
        "improvement_deployments", "Deployed improvements judged, by outcome.", labels=["outcome"]
    )
    for outcome in ("kept", "rolled_back", "regressed"):
        outcomes.add_metric([outcome], tallies["candidates"].get(outcome, 0))
    yield from (started, finished, outcomes)


def _generation(svc: Services) -> Iterator[Metric]:
    stats = svc.llm.stats
    requests = CounterMetricFamily("codegen_requests", "Code-generation requests to the LLM.")
    requests.add_metric([], stats.calls)
    successes = CounterMetricFamily("codegen_successes", "Code-generation requests the LLM answered.")
    successes.add_metric([], stats.calls - stats.failures)
    seconds = CounterMetricFamily("codegen_duration_seconds", "Time spent waiting for the LLM.")
    seconds.add_metric([], stats.latency_ms_total / 1000)
    tokens = CounterMetricFamily("codegen_tokens", "LLM tokens used, by kind.", labels=["kind"])
    tokens.add_metric(["prompt"], stats.prompt_tokens)
    tokens.add_metric(["completion"], stats.completion_tokens)
    yield from (requests, successes, seconds, tokens)


def _detection(svc: Services) -> Iterator[Metric]:
    pending = GaugeMetricFamily(
        "anomaly_detection_pending_batches", "Stored metric batches waiting for the anomaly detectors."
    )
    pending.add_metric([], svc.detections.pending)
    failed = CounterMetricFamily(
        "anomaly_detection_failed_batches", "Stored metric batches the anomaly detectors failed on (they stay stored)."
    )
    failed.add_metric([], svc.detections.failures)
    starts = CounterMetricFamily(
        "analysis_process_starts", "Analysis processes started: the first, and one for each that died (0: off)."
    )
    starts.add_metric([], svc.analysis_process.starts if svc.analysis_process is not None else 0)
    yield from (pending, failed, starts)
