"""The analysis process: the anomaly detectors and the per-series analysis in a child process of the server.

Python runs one thread at a time in a process. Under load the server's process spent a quarter of its time in the
detectors and in analyses, time that every request waited for; in a child process they use another core, and the
server's own process keeps answering. The child opens the same telemetry store (:class:`StoreAddress`: the SQLite
file, whose WAL lets processes read and write it side by side, or the PostgreSQL database), keeps the detectors'
state, and answers one request at a time over a pipe:

* ``observe``: judge points already grouped by series (:func:`group_points`), return the detections as events;
* ``series``: :meth:`LearningEngine.series_findings` of one tenant's window.

The child starts on first use. When it dies (killed, out of memory) the next request starts a new one, and a request
in flight is sent once more to the new child; the detectors prime a new series from its stored points, so a restart
needs no warm-up. Its standard output is its standard error: under stdio the server's standard output is the
protocol. It ignores Ctrl-C and SIGTERM, which a terminal or a service manager sends the whole process group: the
server stops it once it has judged what was queued, and it ends whenever the server's end of the pipe closes (the
server exited, or was killed).
"""

from __future__ import annotations

import atexit
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from telemetry.errors import TelemetryError
from telemetry.learning.engine import LearningEngine, SeriesAnalysis, SeriesFindings
from telemetry.learning.live.anomaly_watch import AnomalyWatch, SeriesPoints, group_points
from telemetry.store.address import StoreAddress
from telemetry.store.records import EventRecord, MetricPoint

logger = logging.getLogger(__name__)

OBSERVE_SECONDS = 60.0  # the most a batch's detection waits for the child's answer before the child is replaced
SERIES_SECONDS = 300.0  # the same for a per-series analysis (a 90-day window of many series takes a while)
START_SECONDS = 60.0  # the most a new child takes to open the store
RETRY_START_SECONDS = 10.0  # after a child could not start, requests fail at once for this long


class AnalysisProcessError(TelemetryError):
    """The analysis process failed a request (its message says what happened)."""


class AnalysisProcess:
    """One child process for one telemetry store. Thread-safe: requests from several threads take turns.

    Each request carries a number its answer repeats, so an answer can never be taken for another's. A request that
    gets no answer in time, or whose child died, replaces the child; a child that cannot start is not tried again
    for :data:`RETRY_START_SECONDS` (requests fail at once meanwhile).
    """

    def __init__(
        self,
        address: StoreAddress,
        *,
        max_series: int,
        start_seconds: float = START_SECONDS,
        observe_seconds: float = OBSERVE_SECONDS,
        series_seconds: float = SERIES_SECONDS,
        retry_start_seconds: float = RETRY_START_SECONDS,
    ) -> None:
        self._address = address
        self._max_series = max_series
        self.start_seconds = start_seconds  # the most a new child may take to open the store (for the next start)
        self._answer_seconds = {"observe": observe_seconds, "series": series_seconds}
        self._retry_start_seconds = retry_start_seconds
        self._context = multiprocessing.get_context("spawn")  # never fork a process with threads
        self._lock = threading.Lock()
        self._process: BaseProcess | None = None
        self._conn: Connection | None = None
        self._closed = False
        self._number = 0  # of the last request sent
        self._cannot_start: tuple[float, str] | None = None  # (until when, why)
        self.starts = 0

    @property
    def pid(self) -> int | None:
        """The child's process id, while one runs."""
        process = self._process
        return process.pid if process is not None and process.is_alive() else None

    def observe(self, points: Sequence[MetricPoint]) -> list[EventRecord]:
        """The detectors' verdicts on stored ``points``: an event per detection (a ``detect`` for the queue)."""
        groups = group_points(points)
        if not groups:
            return []
        found: list[EventRecord] = self._call("observe", groups)
        return found

    def series_findings(self, tenant: str, start: float, end: float, metric_name: str | None) -> SeriesFindings:
        """:meth:`LearningEngine.series_findings`, computed in the child (a ``SeriesAnalysis``)."""
        found: SeriesFindings = self._call("series", tenant, start, end, metric_name)
        return found

    def series_findings_or(self, local: SeriesAnalysis) -> SeriesAnalysis:
        """:meth:`series_findings`, or ``local``'s (in this process) when the child fails: insights keep working."""

        def series(tenant: str, start: float, end: float, metric_name: str | None) -> SeriesFindings:
            try:
                return self.series_findings(tenant, start, end, metric_name)
            except AnalysisProcessError as exc:
                if self._closed:
                    raise
                logger.warning("insights' per-series analysis runs in the server's process this time: %s", exc)
                return local(tenant, start, end, metric_name)

        return series

    def close(self) -> None:
        """Stop the child (it finishes the request it is on, if that ends soon); later requests raise."""
        self._closed = True
        if not self._lock.acquire(timeout=5):  # a request is in flight for long: end its child, the request fails
            process = self._process
            if process is not None:
                process.kill()
            self._lock.acquire()
        try:
            self._stop(wait=True)
        finally:
            self._lock.release()
        atexit.unregister(self._at_exit)

    def _call(self, op: str, *args: Any) -> Any:
        with self._lock:
            for attempt in (1, 2):
                if self._closed:
                    raise AnalysisProcessError("the analysis process is closed: the server is shutting down")
                try:
                    conn = self._ensure()
                    self._number += 1
                    conn.send((self._number, op, args))
                    status, value = self._answer(conn, self._answer_seconds[op])
                except (OSError, EOFError, TimeoutError) as exc:  # the child died or hung: a new one, once
                    self._stop(wait=False)
                    if attempt == 2 or self._closed:
                        raise AnalysisProcessError(f"the analysis process failed twice ({exc}); see the log") from exc
                    logger.warning("the analysis process failed (%s: %s); starting a new one", type(exc).__name__, exc)
                    continue
                if status == "ok":
                    return value
                raise AnalysisProcessError(f"the analysis process could not {op}: {value}")
        raise AssertionError("unreachable")

    def _answer(self, conn: Connection, seconds: float) -> tuple[str, Any]:
        """The answer to the request just sent (numbered :attr:`_number`); raises TimeoutError after ``seconds``."""
        deadline = time.monotonic() + seconds
        while True:
            if not conn.poll(max(0.0, deadline - time.monotonic())):
                raise TimeoutError(f"no answer in {seconds:g} s")
            number, status, value = conn.recv()
            if number == self._number:
                return status, value
            logger.warning("the analysis process answered request %s late; dropped", number)

    def _ensure(self) -> Connection:
        """The running child's pipe, starting a child first if none runs."""
        if self._conn is not None and self._process is not None and self._process.is_alive():
            return self._conn
        self._stop(wait=False)
        if self._cannot_start is not None and time.monotonic() < self._cannot_start[0]:
            raise AnalysisProcessError(self._cannot_start[1])
        mine, theirs = self._context.Pipe()
        process = self._context.Process(
            target=serve, args=(theirs, self._address, self._max_series), name="analysis", daemon=True
        )
        process.start()
        theirs.close()
        self._process, self._conn = process, mine
        self.starts += 1
        atexit.unregister(self._at_exit)  # registered once, after multiprocessing's own exit handler (which waits
        atexit.register(self._at_exit)  # for its children): so it runs first
        try:
            if not mine.poll(self.start_seconds):
                raise TimeoutError(f"it did not start in {self.start_seconds:g} s")
            status, value = mine.recv()  # ("ready", None) or ("error", why): the store could not be opened
            if status != "ready":
                raise ValueError(f"it could not open the telemetry store: {value}")
        except (OSError, EOFError, TimeoutError, ValueError) as exc:
            self._stop(wait=False)  # never left running: its late "ready" would answer the next request
            why = f"the analysis process could not start ({exc}); trying again in {self._retry_start_seconds:g} s"
            self._cannot_start = (time.monotonic() + self._retry_start_seconds, why)
            raise AnalysisProcessError(why) from exc
        self._cannot_start = None
        return mine

    def _stop(self, *, wait: bool) -> None:
        conn, process = self._conn, self._process
        self._conn = self._process = None
        if conn is not None:
            conn.close()  # the child's recv ends: it closes its store and exits
        if process is not None:
            process.join(10 if wait else 0.5)
            if process.is_alive():
                process.kill()
                process.join(10)

    def _at_exit(self) -> None:
        """At interpreter exit without :meth:`close`: end the child (it ignores SIGTERM, and multiprocessing's own
        exit handler would wait for it forever). Takes no lock: a thread may hold it still."""
        process = self._process
        if process is not None and process.is_alive():
            process.kill()


def serve(conn: Connection, address: StoreAddress, max_series: int) -> None:
    """The child's loop (the target of the process): open the store, answer requests until the pipe closes."""
    os.dup2(2, 1)  # stdout is the protocol under stdio: nothing of the child's may land there
    sys.stdout = sys.stderr
    for stop in (signal.SIGINT, signal.SIGTERM):  # the server decides when it ends (see the module's docstring)
        signal.signal(stop, signal.SIG_IGN)
    try:
        store, close = address.open()
    except Exception as exc:
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
        return
    try:
        watch = AnomalyWatch(history=store, max_series=max_series)
        engine = LearningEngine(store, clock=time.time)  # its clock is unused: the server sends each window
        conn.send(("ready", None))
        while True:
            try:
                number, op, args = conn.recv()
            except (EOFError, OSError):
                return  # the server closed its end, or died
            try:
                conn.send((number, "ok", _answer(watch, engine, op, args)))
            except Exception as exc:  # one request's failure is its answer; the child goes on
                conn.send((number, "error", f"{type(exc).__name__}: {exc}"))
    finally:
        close()


def _answer(watch: AnomalyWatch, engine: LearningEngine, op: str, args: tuple[Any, ...]) -> object:
    if op == "observe":
        groups: Sequence[SeriesPoints] = args[0]
        return watch.observe_groups(groups)
    if op == "series":
        tenant, start, end, metric_name = args
        return engine.series_findings(tenant, start, end, metric_name)
    raise ValueError(f"unknown request {op!r}")
