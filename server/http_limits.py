"""Bounds on HTTP connections, so that no client can hold the server's sockets or file descriptors.

uvicorn keeps a connection for as long as the client likes: one that never sends a byte, sends its request head a
byte at a time, announces a large body and trickles it, or never reads what it is sent. A few thousand such sockets
exhaust the open-file limit, and then every other client times out. :class:`GuardedH11Protocol` (uvicorn's h11
protocol with timers) and one :class:`ConnectionGuard` per server bound all of that:

* at most ``max_connections`` are open; at the cap, the connection that has waited longest *without a request in
  progress* (a fresh or keep-alive connection, or one still sending its request head) is closed to make room — a
  client with a request in flight is never cut for a newcomer, and a well-behaved client sends its head at once;
* a request head must be complete within ``read_timeout`` of the connection being ready for one;
* a body may pause for at most ``read_timeout`` at a time and must be complete within ``request_timeout``
  (time in which the server itself stopped reading — the app is busy — does not count against the client);
* a response the client takes none of for ``write_timeout`` ends the connection (a never-reading event stream);
* an idle keep-alive connection is closed after ``keepalive_timeout`` (uvicorn's own timer).

Counters for ``/metrics`` live in :class:`ConnectionStats`.
"""

from __future__ import annotations

import asyncio
import logging
import resource
from collections import Counter, OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import h11
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from uvicorn.protocols.http.h11_impl import H11Protocol

logger = logging.getLogger(__name__)
TIMEOUT_408 = b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
FULL_503 = b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
CLOSE_GRACE_SECONDS = 1.0  # a closing connection whose last bytes the client does not take is cut after this
FD_RESERVE_MIN = 64  # descriptors kept for databases, logs, sandboxed subprocesses and the listening socket
FD_LIMIT_CEILING = 1 << 20
MAX_BACKLOG = 2048  # uvicorn's default listen queue
REASONS = ("evicted", "refused", "header_timeout", "body_timeout", "write_timeout")


@dataclass(frozen=True)
class HttpLimits:
    max_connections: int
    read_timeout: float
    request_timeout: float
    keepalive_timeout: float
    write_timeout: float


@dataclass
class ConnectionStats:
    """What the guard did, for ``/metrics``: connections accepted and closed by it, by reason."""

    accepted: int = 0
    closed: Counter[str] = field(default_factory=Counter)  # evicted, refused, header/body/write timeout
    accept_errors: int = 0
    open: int = 0
    limit: int = 0

    def count_accept_error(self) -> None:
        self.accept_errors += 1


class ConnectionGuard:
    """The connections of one HTTP server: admission at the cap and the order in which idle ones give way.

    Idle connections that have never completed a request (fresh, silent, or still sending a head) give way first,
    oldest first; keep-alive connections that have been served (a client that has shown itself) only when there are
    no others — so a churn of newcomers cannot take a working client's connection from under it.
    """

    def __init__(self, limits: HttpLimits) -> None:
        self.limits = limits
        self.stats = ConnectionStats(limit=limits.max_connections)
        self._open: set[GuardedH11Protocol] = set()
        # No request in progress, oldest first: never served yet, and served before (kept alive).
        self._unproven: OrderedDict[GuardedH11Protocol, None] = OrderedDict()
        self._kept: OrderedDict[GuardedH11Protocol, None] = OrderedDict()

    def admit(self, conn: GuardedH11Protocol) -> bool:
        """Count a new connection in; at the cap close the longest-waiting idle one, or refuse the newcomer."""
        self.stats.accepted += 1
        if len(self._open) >= self.limits.max_connections:
            idle = self._unproven or self._kept
            if not idle:
                self.stats.closed["refused"] += 1
                return False
            oldest, _ = idle.popitem(last=False)
            self._open.discard(oldest)  # its descriptor is released as the loop runs on; it no longer counts
            oldest.cut("evicted")
        self._open.add(conn)
        self._unproven[conn] = None
        self.stats.open = len(self._open)
        return True

    def waiting(self, conn: GuardedH11Protocol, served: bool) -> None:
        """``conn`` has no request in progress (it may give way to a newcomer); ``served``: it has had a response."""
        if conn in self._open:
            idle = self._kept if served else self._unproven
            idle[conn] = None
            idle.move_to_end(conn)

    def busy(self, conn: GuardedH11Protocol) -> None:
        """``conn`` has a request in progress (it is never closed for a newcomer)."""
        self._unproven.pop(conn, None)
        self._kept.pop(conn, None)

    def gone(self, conn: GuardedH11Protocol) -> None:
        self._open.discard(conn)
        self.busy(conn)
        self.stats.open = len(self._open)


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol under a :class:`ConnectionGuard` (see the module docstring)."""

    guard: ConnectionGuard  # set on the subclass :func:`guarded_protocol` makes for one server

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._phase = "head"  # head: waiting for or reading a request head; body; served: the app has the request
        self._read_timer: asyncio.TimerHandle | None = None
        self._write_timer: asyncio.TimerHandle | None = None
        self._request_deadline = 0.0
        self._admitted = False
        self._heard = False  # any bytes of the request now awaited (a silent connection is closed without a word)
        self._served = False  # a response has been completed on this connection

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if not self.guard.admit(self):
            transport.write(FULL_503)
            transport.abort()
            return
        self._admitted = True
        self._await_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timers()
        if self._admitted:
            self.guard.gone(self)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._heard = True
        super().data_received(data)
        self._follow_request()

    def on_response_complete(self) -> None:
        self._served = True
        super().on_response_complete()
        if not self.transport.is_closing():
            self._follow_request()

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._write_timer is None:
            self._write_timer = self.loop.call_later(self.guard.limits.write_timeout, self.cut, "write_timeout")

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._write_timer is not None:
            self._write_timer.cancel()
            self._write_timer = None

    def cut(self, reason: str) -> None:
        """Close this connection now, counted under ``reason`` (a 408 first when a request is cut short)."""
        if self.transport.is_closing():
            return
        self.guard.stats.closed[reason] += 1
        self._cancel_timers()
        if reason in ("header_timeout", "body_timeout") and self._heard and self._no_response_yet():
            self.transport.write(TIMEOUT_408)
            self.transport.close()  # sends the 408 first; a client that will not take it is cut below
            self.loop.call_later(CLOSE_GRACE_SECONDS, self.transport.abort)
        else:
            self.transport.abort()  # frees the descriptor now, whatever is still buffered

    def _no_response_yet(self) -> bool:
        return self.cycle is None or not self.cycle.response_started or self.cycle.response_complete

    def _follow_request(self) -> None:
        """Move the timers along with h11's view of the request: head → body → handed to the app → next head."""
        state = self.conn.their_state
        if state is h11.IDLE and self.conn.our_state is h11.IDLE:
            if self._phase != "head":
                self._await_head()
        elif state is h11.SEND_BODY:
            if self._phase != "body":
                self._phase = "body"
                self.guard.busy(self)
                self._request_deadline = self.loop.time() + self.guard.limits.request_timeout
            self._arm_read(min(self.guard.limits.read_timeout, self._request_deadline - self.loop.time()))
        elif self._phase != "served":
            self._phase = "served"  # the request is in (or the connection is ending): only the write timer is left
            self.guard.busy(self)
            self._cancel_read()

    def _await_head(self) -> None:
        self._phase = "head"
        self._heard = False
        self.guard.waiting(self, served=self._served)
        self._arm_read(self.guard.limits.read_timeout)

    def _arm_read(self, delay: float) -> None:
        self._cancel_read()
        self._read_timer = self.loop.call_later(max(0.0, delay), self._read_expired)

    def _read_expired(self) -> None:
        self._read_timer = None
        if self.flow is not None and self.flow.read_paused:
            # The server stopped reading (the app has not taken the body yet): not the client's delay.
            self._request_deadline += self.guard.limits.read_timeout
            self._arm_read(self.guard.limits.read_timeout)
            return
        self.cut("header_timeout" if self._phase == "head" else "body_timeout")

    def _cancel_read(self) -> None:
        if self._read_timer is not None:
            self._read_timer.cancel()
            self._read_timer = None

    def _cancel_timers(self) -> None:
        self._cancel_read()
        if self._write_timer is not None:
            self._write_timer.cancel()
            self._write_timer = None


def guarded_protocol(guard: ConnectionGuard) -> type[GuardedH11Protocol]:
    """The protocol class uvicorn instantiates per connection of one server, bound to that server's guard."""
    return type("ServerH11Protocol", (GuardedH11Protocol,), {"guard": guard})


@dataclass(frozen=True)
class Budget:
    connections: int  # open connections allowed at once
    backlog: int  # the listen queue, which is also how many connections asyncio accepts in one go


def connection_budget(wanted: int) -> Budget:
    """How many connections this process can hold: raises the soft open-file limit to the hard one (as servers
    commonly do), then keeps descriptors in reserve for everything that is not a client connection, and for one
    burst of accepts (asyncio accepts up to the backlog at once, before any connection is seen and counted) and
    the descriptors of as many connections closed to make room (released as the loop runs on)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = FD_LIMIT_CEILING if hard == resource.RLIM_INFINITY else min(hard, FD_LIMIT_CEILING)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            logger.debug("could not raise the open-file limit from %d to %d", soft, target, exc_info=True)
    if soft == resource.RLIM_INFINITY:
        return Budget(wanted, MAX_BACKLOG)
    backlog = min(MAX_BACKLOG, max(16, soft // 8))
    budget = max(8, soft - max(FD_RESERVE_MIN, soft // 8) - 2 * backlog)  # accepted, and as many evicted
    if budget < wanted:
        logger.warning(
            "HTTP connections capped at %d (not %d): the open-file limit is %d; raise it (systemd: LimitNOFILE=) "
            "to allow more",
            budget,
            wanted,
            soft,
        )
        return Budget(budget, backlog)
    return Budget(wanted, backlog)


class ConnectionCollector(Collector):
    """``/metrics``: open HTTP connections and their cap, connections the guard closed (by reason), failed accepts
    and log lines held back by the flood filter."""

    def __init__(self, stats: ConnectionStats, flood: _Suppressing) -> None:
        self._stats = stats
        self._flood = flood

    def describe(self) -> Iterator[Metric]:
        return iter(())  # collected fresh each scrape

    def collect(self) -> Iterator[Metric]:
        stats = self._stats
        open_now = GaugeMetricFamily("http_connections_open", "HTTP connections open now.")
        open_now.add_metric([], stats.open)
        limit = GaugeMetricFamily("http_connections_limit", "HTTP connections allowed at once.")
        limit.add_metric([], stats.limit)
        accepted = CounterMetricFamily("http_connections_accepted", "HTTP connections accepted.")
        accepted.add_metric([], stats.accepted)
        closed = CounterMetricFamily(
            "http_connections_closed_by_server",
            "HTTP connections the server closed: evicted (idle, to make room), refused (full), header_timeout, "
            "body_timeout, write_timeout (the client read nothing).",
            labels=["reason"],
        )
        for reason in REASONS:
            closed.add_metric([reason], stats.closed.get(reason, 0))
        accept_errors = CounterMetricFamily(
            "http_accept_errors", "Failed accept() calls (out of file descriptors or memory)."
        )
        accept_errors.add_metric([], stats.accept_errors)
        suppressed = CounterMetricFamily("log_lines_suppressed", "Repeated log lines held back by the flood filter.")
        suppressed.add_metric([], self._flood.suppressed)
        yield from (open_now, limit, accepted, closed, accept_errors, suppressed)


class _Suppressing(Protocol):
    suppressed: int
