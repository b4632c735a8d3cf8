"""The server's own metrics as CloudWatch datums, one set per publish interval (with
``enable_cloudwatch_publishing``); ``telemetry/cloudwatch/publisher.py`` sends them.

Every datum carries the ``Server`` dimension (the host name), so several servers can share one namespace. Per
interval, read from the ``ServerMetrics`` registry:

- ``CycleSuccessRate`` (Percent): improvement cycles that ended in the interval with status ``completed``, out of
  all that ended (``completed``, ``no_improvement``, ``failed``, ``interrupted``; ``nothing_to_do`` is no work).
  Sent as a statistic set where each ended cycle is one sample of 100 (completed) or 0, so CloudWatch's Average
  over any period is the exact success rate of that period. Omitted when no cycle ended.
- ``CodeGenerationLatency`` (Seconds): per answered LLM request in the interval, as a statistic set (Average;
  Maximum and Minimum from the client's last 100 latencies). Omitted without requests.
- ``TelemetryThroughput`` (Count/Second): telemetry items stored per second in the interval.
- ``BreakerState`` (per ``Source``: 0 closed, 1 half open, 2 open) and ``BreakersOpen`` (sources whose breaker
  is not closed), while CloudWatch streaming is on.
- ``EvolutionLevel`` (Count): deployed improvements kept, all time.
- ``Rollbacks``, ``ToolCalls``, ``ToolErrors`` (Count): in the interval.
"""

from __future__ import annotations

import socket
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import anyio.to_thread

from server.metrics import ServerMetrics
from telemetry.cloudwatch import dashboard as names
from telemetry.cloudwatch.publisher import Datum, MetricPublisher

if TYPE_CHECKING:
    from server.settings import Settings

_Figures = dict[str, float]
_CYCLE_ENDS = ("completed", "no_improvement", "failed", "interrupted")
_RECENT_LATENCIES = 100  # LLMStats keeps the last 100


def server_name() -> str:
    """The ``Server`` dimension value: this host's name (stable across restarts)."""
    return (socket.gethostname() or "unknown")[:255]


def _read(metrics: ServerMetrics) -> tuple[_Figures, dict[str, float]]:
    """Counter totals by figure name, and the breaker state of each CloudWatch source."""
    totals: _Figures = defaultdict(float)
    breakers: dict[str, float] = {}
    for family in metrics.registry.collect():
        for sample in family.samples:
            labels = sample.labels
            if sample.name == "mcp_tool_calls_total":
                totals["tool_calls"] += sample.value
                if labels.get("outcome") == "error":
                    totals["tool_errors"] += sample.value
            elif sample.name == "telemetry_items_ingested_total":
                totals["items"] += sample.value
            elif sample.name == "improvement_cycles_completed_total":
                totals[f"cycles_{labels.get('status')}"] += sample.value
            elif sample.name == "improvement_deployments_total":
                totals[f"outcome_{labels.get('outcome')}"] += sample.value
            elif sample.name in ("codegen_successes_total", "codegen_duration_seconds_total"):
                totals[sample.name] += sample.value
            elif sample.name == "cloudwatch_breaker_state":
                breakers[labels.get("source", "?")] = sample.value
    return totals, breakers


class ServerFigures:
    """Called once per interval (blocking: it reads the cycle store): the datums of the interval since the last
    call. ``prime()`` takes the starting point; counts before it (e.g. cycles of earlier runs) are not sent."""

    def __init__(
        self,
        metrics: ServerMetrics,
        server: str,
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._metrics, self._server = metrics, server
        self._clock, self._monotonic = clock, monotonic
        self._last: _Figures = {}
        self._last_at = monotonic()

    def prime(self) -> None:
        self._last, _ = _read(self._metrics)
        self._last_at = self._monotonic()

    def __call__(self) -> list[Datum]:
        now, at = _read(self._metrics), self._monotonic()
        totals, breakers = now
        elapsed = max(at - self._last_at, 1e-6)
        delta = {key: max(0.0, value - self._last.get(key, 0.0)) for key, value in totals.items()}
        stamp = datetime.fromtimestamp(self._clock(), UTC)
        datums = [
            self._datum(names.TOOL_CALLS, stamp, "Count", value=delta.get("tool_calls", 0.0)),
            self._datum(names.TOOL_ERRORS, stamp, "Count", value=delta.get("tool_errors", 0.0)),
            self._datum(names.TELEMETRY_THROUGHPUT, stamp, "Count/Second", value=delta.get("items", 0.0) / elapsed),
            self._datum(names.ROLLBACKS, stamp, "Count", value=delta.get("outcome_rolled_back", 0.0)),
            self._datum(names.EVOLUTION_LEVEL, stamp, "Count", value=totals.get("outcome_kept", 0.0)),
        ]
        ended = sum(delta.get(f"cycles_{status}", 0.0) for status in _CYCLE_ENDS)
        if ended:
            completed = delta.get("cycles_completed", 0.0)
            rate = {
                "SampleCount": ended,
                "Sum": 100.0 * completed,
                "Minimum": 100.0 if completed == ended else 0.0,
                "Maximum": 100.0 if completed else 0.0,
            }
            datums.append(self._datum(names.CYCLE_SUCCESS_RATE, stamp, "Percent", statistics=rate))
        answered = int(delta.get("codegen_successes_total", 0.0))
        if answered:
            datums.append(self._latency(stamp, answered, delta.get("codegen_duration_seconds_total", 0.0)))
        for source, state in sorted(breakers.items()):
            datums.append(self._datum(names.BREAKER_STATE, stamp, "None", value=state, source=source))
        if breakers:
            not_closed = float(sum(1 for state in breakers.values() if state > 0))
            datums.append(self._datum(names.BREAKERS_OPEN, stamp, "Count", value=not_closed))
        self._last, self._last_at = dict(totals), at
        return datums

    def _latency(self, stamp: datetime, answered: int, seconds: float) -> Datum:
        average = seconds / answered
        services = self._metrics.services
        recent = list(services.llm.stats.recent_latencies_ms) if services is not None else []
        window = [ms / 1000 for ms in recent[-min(answered, _RECENT_LATENCIES) :]] or [average]
        low, high = min(*window, average), max(*window, average)
        statistics = {"SampleCount": float(answered), "Sum": seconds, "Minimum": low, "Maximum": high}
        return self._datum(names.CODEGEN_LATENCY, stamp, "Seconds", statistics=statistics)

    def _datum(
        self,
        name: str,
        stamp: datetime,
        unit: str,
        *,
        value: float | None = None,
        statistics: dict[str, float] | None = None,
        source: str | None = None,
    ) -> Datum:
        dimensions = [{"Name": names.SERVER_DIMENSION, "Value": self._server}]
        if source is not None:
            dimensions.append({"Name": names.SOURCE_DIMENSION, "Value": source})
        datum: dict[str, Any] = {"MetricName": name, "Dimensions": dimensions, "Timestamp": stamp, "Unit": unit}
        if statistics is not None:
            datum["StatisticValues"] = statistics
        else:
            datum["Value"] = value
        return datum


async def start_publishing(settings: Settings, metrics: ServerMetrics) -> MetricPublisher:
    """The publisher of this server's metrics, primed (call once ``metrics.services`` is set); run ``run()`` in the
    lifespan's task group and ``close()`` at shutdown (it sends what is left)."""
    figures = ServerFigures(metrics, server_name())
    await anyio.to_thread.run_sync(figures.prime)
    return MetricPublisher(
        settings.cloudwatch,
        settings.cloudwatch_publish_namespace,
        figures,
        interval_seconds=settings.cloudwatch_publish_interval_seconds,
    )
