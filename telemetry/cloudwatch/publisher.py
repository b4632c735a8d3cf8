"""Publishes figures to CloudWatch with ``PutMetricData``: batched within AWS limits, buffered (bounded) while AWS
cannot be reached, behind a circuit breaker, and flushed one last time on shutdown.

The figures come from a callable the caller gives (the server maps its own metrics to datums); this module knows
nothing of what they mean. A datum is a ``PutMetricData`` ``MetricDatum`` dict (``MetricName``, ``Dimensions``,
``Timestamp``, ``Value`` or ``StatisticValues``, ``Unit``).
"""

from __future__ import annotations

import json
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import anyio
import anyio.to_thread
from pydantic import BaseModel, Field

from telemetry.cloudwatch.aws import AwsClients
from telemetry.cloudwatch.breaker import BreakerStatus, CircuitBreaker
from telemetry.cloudwatch.config import CloudWatchConfig
from telemetry.cloudwatch.retry import call_with_retry, describe_error
from telemetry.errors import TelemetryError

logger = logging.getLogger(__name__)
Datum = dict[str, Any]
MAX_DATUMS_PER_CALL = 1000  # the PutMetricData limit
# AWS takes up to 1 MB per PutMetricData request. Sizes here are estimated as compact JSON; botocore may send the
# older query encoding (longer keys per value), so a batch stays well under the limit.
MAX_BATCH_BYTES = 250_000
MAX_DATUM_AGE_SECONDS = 14 * 86400 - 3600  # CloudWatch refuses datums older than two weeks
# The batch itself is wrong: sending it again cannot help, so it is dropped (and logged) instead of blocking the rest.
REFUSED_CODES = frozenset(
    {
        "InvalidParameterValue",
        "InvalidParameterValueException",
        "InvalidParameterCombination",
        "InvalidParameterCombinationException",
        "MissingParameter",
        "MissingRequiredParameterException",
        "ValidationError",
    }
)


class PublisherHealth(BaseModel):
    name: str = Field("cloudwatch.publish", description="Its name among the sources.")
    namespace: str = Field(description="CloudWatch namespace.")
    last_success: float | None = Field(None, description="Unix time of the last accepted batch.")
    last_error: str | None = Field(None, description="Last error, if the last try failed.")
    last_error_at: float | None = Field(None, description="Unix time of the last failure.")
    datums_sent: int = Field(0, description="Datums accepted since start-up.")
    batches_sent: int = Field(0, description="Batches accepted since start-up.")
    datums_dropped: int = Field(0, description="Datums given up (buffer full or refused).")
    buffered: int = Field(0, description="Datums waiting.")
    failures: int = Field(0, description="Failed batches (after retries) since start-up.")
    breaker: BreakerStatus = Field(description="Its circuit breaker.")


def _error_code(exc: BaseException) -> str:
    response: Any = getattr(exc, "response", None)
    return str(response.get("Error", {}).get("Code", "")) if isinstance(response, dict) else ""


def _size(datum: Datum) -> int:
    return len(json.dumps(datum, default=str, separators=(",", ":")))


class MetricPublisher:
    """``run()`` publishes every ``interval_seconds`` until cancelled; ``close()`` sends what is left (bounded)."""

    def __init__(
        self,
        config: CloudWatchConfig,
        namespace: str,
        figures: Callable[[], Sequence[Datum]],
        *,
        interval_seconds: float,
        clients: AwsClients | None = None,
        clock: Callable[[], float] = time.time,
        max_buffered: int = 20_000,
        batch_datums: int = MAX_DATUMS_PER_CALL,
        batch_bytes: int = MAX_BATCH_BYTES,
        shutdown_seconds: float = 10.0,
    ) -> None:
        """``figures`` is called (in a worker thread) once per interval and returns the datums to send.

        Raises:
            TelemetryError: the namespace is one AWS reserves, or a limit is out of range.
        """
        if not namespace or namespace.startswith("AWS/") or len(namespace) > 255:
            raise TelemetryError(f"invalid CloudWatch namespace {namespace!r}: 1-255 characters, not starting AWS/")
        if not 1 <= batch_datums <= MAX_DATUMS_PER_CALL or batch_bytes < 1 or max_buffered < 1:
            raise TelemetryError(f"batch_datums must be 1-{MAX_DATUMS_PER_CALL}; batch_bytes, max_buffered >= 1")
        self.config, self.namespace, self.interval_seconds = config, namespace, interval_seconds
        self._figures = figures
        self._clients = clients or AwsClients(config)
        self._clock = clock
        self._max_buffered, self._batch_datums, self._batch_bytes = max_buffered, batch_datums, batch_bytes
        self._shutdown_seconds = shutdown_seconds
        self._breaker = CircuitBreaker(config.breaker_failure_threshold, config.breaker_cooldown_seconds, clock)
        self._buffer: deque[tuple[Datum, int]] = deque()
        self._lock = anyio.Lock()
        self._health = PublisherHealth(namespace=namespace, breaker=self._breaker.status())

    async def run(self) -> None:
        """Publish once per interval until cancelled."""
        logger.info("publishing metrics to CloudWatch namespace %s every %gs", self.namespace, self.interval_seconds)
        while True:
            await anyio.sleep(self.interval_seconds)
            await self.publish()

    async def publish(self, *, force: bool = False) -> int:
        """Take the figures, then send what is buffered while the breaker lets calls through (``force``: one try
        even when it is open). Returns the datums sent; AWS trouble is counted and logged, never raised."""
        async with self._lock:
            try:
                datums = await anyio.to_thread.run_sync(self._figures, abandon_on_cancel=True)
            except Exception:  # a broken figures source must not stop publishing what is buffered
                logger.exception("could not take the figures to publish to CloudWatch")
            else:
                self._enqueue(datums)
            return await self._flush(force)

    async def close(self) -> None:
        """Final figures and flush, with one try even if the breaker is open; bounded by ``shutdown_seconds`` and
        shielded from cancellation (shutdown may come by cancellation)."""
        with anyio.CancelScope(shield=True), anyio.move_on_after(self._shutdown_seconds):
            await self.publish(force=True)
        if self._buffer:
            logger.warning("%d datum(s) not published to CloudWatch at shutdown (%s)",
                           len(self._buffer), self._health.last_error or "out of time")  # fmt: skip

    def health(self) -> PublisherHealth:
        return self._health.model_copy(update={"buffered": len(self._buffer), "breaker": self._breaker.status()})

    def _enqueue(self, datums: Sequence[Datum]) -> None:
        self._buffer.extend((datum, _size(datum)) for datum in datums)
        overflow = len(self._buffer) - self._max_buffered
        if overflow > 0:
            for _ in range(overflow):
                self._buffer.popleft()
            self._health.datums_dropped += overflow
            logger.warning("CloudWatch publishing buffer full (%d datums): dropped the %d oldest (%s)",
                           self._max_buffered, overflow, self._health.last_error or "AWS slow")  # fmt: skip

    def _drop_stale(self) -> None:
        oldest = self._clock() - MAX_DATUM_AGE_SECONDS
        stale = 0
        while self._buffer and _timestamp(self._buffer[0][0]) < oldest:
            self._buffer.popleft()
            stale += 1
        if stale:
            self._health.datums_dropped += stale
            logger.warning("dropped %d datum(s) older than CloudWatch accepts", stale)

    def _next_batch(self) -> list[Datum]:
        batch: list[Datum] = []
        total = 0
        for datum, size in self._buffer:
            if len(batch) == self._batch_datums or (batch and total + size > self._batch_bytes):
                break
            batch.append(datum)
            total += size
        return batch

    async def _flush(self, force: bool) -> int:
        sent = 0
        self._drop_stale()
        while self._buffer and (self._breaker.allow() or force):
            force = False
            batch = self._next_batch()
            before = self._breaker.state
            try:
                await anyio.to_thread.run_sync(self._send, batch, abandon_on_cancel=True)
            except Exception as exc:
                if not self._failed(exc, batch, before):
                    break
                continue
            for _ in batch:
                self._buffer.popleft()
            sent += len(batch)
            self._breaker.record_success()
            health = self._health
            health.datums_sent, health.batches_sent = health.datums_sent + len(batch), health.batches_sent + 1
            health.last_success, health.last_error = self._clock(), None
            if before != "closed":
                logger.info("CloudWatch publishing recovered; %d datum(s) still buffered", len(self._buffer))
        return sent

    def _failed(self, exc: Exception, batch: list[Datum], before: str) -> bool:
        """Record a failed call; True when the batch was dropped as invalid and the next one may go."""
        health = self._health
        health.failures += 1
        health.last_error, health.last_error_at = describe_error(exc), self._clock()
        if _error_code(exc) in REFUSED_CODES:
            for _ in batch:
                self._buffer.popleft()
            health.datums_dropped += len(batch)
            logger.error("CloudWatch refused %d datum(s), dropped them: %s", len(batch), health.last_error)
            return True
        self._breaker.record_failure()
        if self._breaker.state == "open" and before == "closed":  # failed probes after that are only info
            logger.warning("CloudWatch publishing paused (breaker open, %d buffered): %s",
                           len(self._buffer), health.last_error)  # fmt: skip
        else:
            logger.info("PutMetricData failed (%d buffered): %s", len(self._buffer), health.last_error)
        return False

    def _send(self, batch: list[Datum]) -> None:
        client = self._clients.client("cloudwatch")
        call_with_retry(
            lambda: client.put_metric_data(Namespace=self.namespace, MetricData=batch),
            attempts=self.config.retry_attempts,
            initial=self.config.retry_initial_seconds,
        )


def _timestamp(datum: Datum) -> float:
    stamp = datum.get("Timestamp")
    if isinstance(stamp, datetime):
        return stamp.timestamp()
    return float(stamp) if isinstance(stamp, int | float) else float("inf")  # no timestamp: AWS stamps it "now"
