"""How many LLM requests may be in flight at once, and the detection of an endpoint that queues them.

A model on a CPU (llama.cpp, Ollama) serves one request at a time: a second request sent meanwhile waits in the
server's queue, silent, and the silence timeout counts that wait as if the model had hung. So the default is one
request at a time for an endpoint on this machine or the private network, four otherwise.

With more than one allowed, queueing is detected from what the requests saw. A request that waited for its first
token while other answers streamed, and got it late by at least half of the time they streamed (compared with the
quickest first token of a request that waited alone), was held up by them: evidence of a queue. Two such requests in
a row lower the limit to one, once, with a warning; a request that overlapped others without being held up clears
the evidence (the endpoint served them side by side).
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit

import anyio

logger = logging.getLogger(__name__)
REMOTE_CONCURRENCY = 4
EVIDENCE_NEEDED = 2
LATE_SHARE = 0.5  # of the time others streamed while a request waited
RECENT_KEPT = 16


def default_concurrency(base_url: str | None) -> int:
    """1 for a loopback, private or single-label host (a model next to us), 4 otherwise (OpenAI, a cloud)."""
    host = urlsplit(base_url).hostname if base_url else None
    if host is None:
        return REMOTE_CONCURRENCY
    if host == "localhost" or host.endswith((".localhost", ".local", ".internal")) or "." not in host:
        return 1
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return REMOTE_CONCURRENCY
    return 1 if address.is_loopback or address.is_private or address.is_link_local else REMOTE_CONCURRENCY


@dataclass(eq=False, slots=True)
class Flight:
    """One request in flight: when it was sent, got its first token, and ended (monotonic seconds)."""

    started: float
    first_token: float | None = None
    ended: float | None = None


class Flights:
    """Limits requests in flight (``async with flights.slot() as flight``) and watches for a queueing endpoint."""

    def __init__(self, limit: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._limiter = anyio.CapacityLimiter(limit)
        self._clock = clock
        self._active: set[Flight] = set()
        self._recent: deque[Flight] = deque(maxlen=RECENT_KEPT)
        self._solo_ttft: float | None = None
        self._evidence = 0
        self.queueing_detected = False

    @property
    def limit(self) -> int:
        return int(self._limiter.total_tokens)

    @property
    def in_flight(self) -> int:
        return len(self._active)

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[Flight]:
        async with self._limiter:
            flight = Flight(self._clock())
            self._active.add(flight)
            try:
                yield flight
            finally:
                flight.ended = self._clock()
                self._active.discard(flight)
                self._recent.append(flight)

    def first_token(self, flight: Flight) -> None:
        """Note the first token of ``flight``, and judge what its wait says about the endpoint."""
        if flight.first_token is not None:
            return
        now = flight.first_token = self._clock()
        waited = now - flight.started
        others = [f for f in (*self._active, *self._recent) if f is not flight]
        streamed = sum(_overlap(f.first_token, f.ended, flight.started, now) for f in others)
        if streamed <= 0:  # nothing else streamed while it waited: what a first token takes
            self._solo_ttft = waited if self._solo_ttft is None else min(self._solo_ttft, waited)
            return
        if self._solo_ttft is None or self.limit == 1:
            return
        if waited - self._solo_ttft < LATE_SHARE * streamed:
            self._evidence = 0  # it was not held up by the others: they were served side by side
            return
        self._evidence += 1
        if self._evidence >= EVIDENCE_NEEDED:
            self._lower(waited, streamed)

    def _lower(self, waited: float, streamed: float) -> None:
        self._limiter.total_tokens = 1
        self.queueing_detected = True
        logger.warning(
            "the LLM endpoint serves one request at a time (a first token came %.1f s after it was asked, only "
            "once the %.1f s of other answers had streamed): now sending one request at a time; set "
            "llm_max_concurrency=1 to say so from the start",
            waited,
            streamed,
        )


def _overlap(start: float | None, end: float | None, lo: float, hi: float) -> float:
    if start is None:
        return 0.0
    return max(0.0, min(hi, end if end is not None else hi) - max(lo, start))
