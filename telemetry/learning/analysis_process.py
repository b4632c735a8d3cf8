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
from telemetry.learning.engine import LearningEngine, SeriesFindings
from telemetry.learning.live.anomaly_watch import AnomalyWatch, SeriesPoints, group_points
from telemetry.store.address import StoreAddress
from telemetry.store.records import EventRecord, MetricPoint

logger = logging.getLogger(__name__)

ANSWER_SECONDS = 600.0  # the most a request waits for the child's answer before the child is replaced
START_SECONDS = 60.0  # the most a new child takes to open the store


class AnalysisProcessError(TelemetryError):
    """The analysis process failed a request (its message says what happened)."""


class AnalysisProcess:
    """One child process for one telemetry store. Thread-safe: requests from several threads take turns."""

    def __init__(self, address: StoreAddress, *, max_series: int, answer_seconds: float = ANSWER_SECONDS) -> None:
        self._address = address
        self._max_series = max_series
        self._answer_seconds = answer_seconds
        self._context = multiprocessing.get_context("spawn")  # never fork a process with threads
        self._lock = threading.Lock()
        self._process: BaseProcess | None = None
        self._conn: Connection | None = None
        self._closed = False
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

    def close(self) -> None:
        """Stop the child (it finishes the request it is on); later requests raise."""
        with self._lock:
            self._closed = True
            self._stop(wait=True)

    def _call(self, op: str, *args: Any) -> Any:
        with self._lock:
            for attempt in (1, 2):
                if self._closed:
                    raise AnalysisProcessError("the analysis process is closed: the server is shutting down")
                conn = self._ensure()
                try:
                    conn.send((op, args))
                    if not conn.poll(self._answer_seconds):
                        raise TimeoutError(f"no answer in {self._answer_seconds:g} s")
                    status, value = conn.recv()
                except (OSError, EOFError, TimeoutError) as exc:  # the child died or hung: a new one, once
                    logger.warning("the analysis process failed (%s: %s); starting a new one", type(exc).__name__, exc)
                    self._stop(wait=False)
                    if attempt == 2:
                        raise AnalysisProcessError(f"the analysis process failed twice ({exc}); see the log") from exc
                    continue
                if status == "ok":
                    return value
                raise AnalysisProcessError(f"the analysis process could not {op}: {value}")
        raise AssertionError("unreachable")

    def _ensure(self) -> Connection:
        if self._conn is not None and self._process is not None and self._process.is_alive():
            return self._conn
        self._stop(wait=False)
        mine, theirs = self._context.Pipe()
        process = self._context.Process(
            target=serve, args=(theirs, self._address, self._max_series), name="analysis", daemon=True
        )
        process.start()
        theirs.close()
        self._process, self._conn = process, mine
        self.starts += 1
        if not mine.poll(START_SECONDS):
            raise AnalysisProcessError(f"the analysis process did not start in {START_SECONDS:g} s")
        status, value = mine.recv()  # ("ready", None) or ("error", why): the store could not be opened
        if status != "ready":
            self._stop(wait=False)
            raise AnalysisProcessError(f"the analysis process could not open the telemetry store: {value}")
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
                op, args = conn.recv()
            except (EOFError, OSError):
                return  # the server closed its end, or died
            try:
                conn.send(("ok", _answer(watch, engine, op, args)))
            except Exception as exc:  # one request's failure is its answer; the child goes on
                conn.send(("error", f"{type(exc).__name__}: {exc}"))
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
