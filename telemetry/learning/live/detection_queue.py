"""Anomaly detection off the ingest's path: stored batches are judged after their ingest is answered, in order.

An ingest used to wait for its points to go through the detectors; under load that was a fifth of its time. The
points are stored (and acknowledged) first, as before; the queue then hands each batch to ``detect`` on its own
thread, one batch at a time in the order they were stored, and records what it found. A reader that should see the
detections of every batch stored before it asked (the anomaly insights, an events query) calls :meth:`settled`
first: what an agent pushed and then asked about is judged by then, as when detection was part of the ingest.

The queue is bounded by the points it holds: when ``max_points`` wait, the next ingest waits for room (detection that
cannot keep up slows ingests down instead of holding unbounded memory or dropping batches); a batch larger than the
bound is taken when the queue is empty. A batch whose detection fails is logged and skipped; its points stay stored.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence

from telemetry.store.records import EventRecord, MetricPoint

logger = logging.getLogger(__name__)

MAX_POINTS = 100_000  # points waiting for the detectors (about 15 MB) before an ingest waits for room
SETTLE_SECONDS = 60.0  # the most a reader waits for the batches before it
FAILURE_LOG_SECONDS = 60.0  # after the first failure, at most one log line this often


class DetectionQueue:
    """Runs ``detect`` on each batch put, in order, on one thread, and ``record``s the detections it returns."""

    def __init__(
        self,
        detect: Callable[[Sequence[MetricPoint]], list[EventRecord]],
        record: Callable[[list[EventRecord]], object],
        *,
        max_points: int = MAX_POINTS,
    ) -> None:
        if max_points < 1:
            raise ValueError("max_points must be at least 1")
        self._detect = detect
        self._record = record
        self._max_points = max_points
        self._pending: deque[Sequence[MetricPoint]] = deque()
        self._points = 0  # in the batches of _pending
        self._changed = threading.Condition()
        self._done = 0  # batches judged (or failed) so far; _done + len(_pending) have been put
        self._closed = False
        self._thread: threading.Thread | None = None
        self.failures = 0
        self._unreported = 0  # failures since the last one logged
        self._reported_at = -math.inf

    @property
    def pending(self) -> int:
        """Batches put but not judged yet."""
        with self._changed:
            return len(self._pending)

    def put(self, points: Sequence[MetricPoint]) -> None:
        """Queue a stored batch for the detectors; waits while the batches waiting already hold too many points."""
        if not points:
            return
        with self._changed:
            while self._pending and self._points + len(points) > self._max_points and not self._closed:
                self._changed.wait()
            if self._closed:
                raise RuntimeError("the detection queue is closed")
            self._pending.append(points)
            self._points += len(points)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="anomaly detection", daemon=True)
                self._thread.start()
            self._changed.notify_all()

    def settled(self, timeout: float = SETTLE_SECONDS) -> bool:
        """Wait until every batch put before this call is judged; False when ``timeout`` passed first."""
        with self._changed:
            target = self._done + len(self._pending)
            return self._changed.wait_for(lambda: self._done >= target or self._closed, timeout)

    def close(self, timeout: float = SETTLE_SECONDS) -> None:
        """Judge what is queued (up to ``timeout``), then stop the thread (it finishes the batch it is on, and leaves
        the rest unjudged); later puts raise."""
        self.settled(timeout)
        with self._changed:
            self._closed = True
            self._changed.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout)
        left = self.pending
        if left:
            logger.warning("%d stored batch(es) were not judged by the anomaly detectors before shutdown", left)

    def _run(self) -> None:
        while True:
            with self._changed:
                self._changed.wait_for(lambda: bool(self._pending) or self._closed)
                if self._closed:
                    return
                points = self._pending[0]
            try:
                found = self._detect(points)
                if found:
                    self._record(found)
            except Exception as exc:
                self._failed(exc, len(points))
            with self._changed:
                self._points -= len(self._pending.popleft())
                self._done += 1
                self._changed.notify_all()

    def _failed(self, exc: Exception, points: int) -> None:
        """Count a failed batch; log the first with its traceback, then at most one line a minute (a child that
        cannot start fails every batch, and the log must not grow by a traceback each)."""
        self.failures += 1
        self._unreported += 1
        now = time.monotonic()
        if self.failures == 1:
            logger.exception("anomaly detection failed for a batch of %d points (they are stored)", points)
        elif now - self._reported_at >= FAILURE_LOG_SECONDS:
            logger.warning(
                "anomaly detection failed for %d more batch(es) (they are stored); the last: %s: %s",
                self._unreported, type(exc).__name__, exc,
            )  # fmt: skip
        else:
            return
        self._unreported = 0
        self._reported_at = now
