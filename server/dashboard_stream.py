"""The dashboard's event stream (``GET /dashboard/api/stream``): server-sent events, one stream per open page.

A stream gets ``change`` (with the resource URI) as soon as something the signed-in key may see changes, ``tick``
every interval otherwise (the page then refreshes its live figures), and ends after a while (the browser reconnects)
or when the server stops. It is pushed like every other stream (:mod:`server.push`): changes wait in a bounded
outbox (oldest dropped, counted), and a browser that reads nothing for the stall bound has its stream ended (counted)
instead of holding it in a write forever.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import AsyncGenerator, Callable, Mapping

import anyio
from mcp.server.subscriptions import ServerEvent
from starlette.responses import StreamingResponse
from starlette.types import Send

from server.notifications import Notifier
from server.push import Outbox, Stalled, change_key, may_see, send_within
from tools.access import Caller

logger = logging.getLogger(__name__)
TICK = "event: tick\ndata: {}\n\n"
STREAM_SECONDS = 60.0  # each event stream ends after this and the browser reconnects (server stops stay quick)


class ChangeStreams:
    """The open event streams: each gets the resource changes its key may see, and all end when the server stops."""

    def __init__(self, notifier: Notifier, interval: float) -> None:
        self._notifier = notifier
        self._interval = interval
        self._open: set[Outbox[str]] = set()
        self.stopping = False

    def __len__(self) -> int:
        return len(self._open)

    def stop(self) -> None:
        """End every open stream now (the HTTP server is stopping: browsers reconnect to its successor)."""
        self.stopping = True
        for outbox in list(self._open):
            outbox.close()

    def response(self, caller: Caller, headers: Mapping[str, str]) -> StreamingResponse:
        """The streaming response of one page, signed in as ``caller``."""
        return _BoundedStream(self.events(caller), self._notifier.stall_seconds, self._stalled, headers)

    async def events(self, caller: Caller) -> AsyncGenerator[str, None]:
        """The stream's server-sent events, as text."""
        notifier = self._notifier
        outbox = Outbox[str](notifier.queue_max, "dashboard", notifier.stats, key=lambda uri: uri)

        def listener(event: ServerEvent) -> None:
            if may_see(caller, event):  # another tenant's deployments and cycles are none of this page's business
                outbox.put(change_key(event))

        unsubscribe = notifier.bus.subscribe(listener)
        self._open.add(outbox)
        try:
            yield f"retry: {int(self._interval * 1000)}\n\n"
            deadline = time.monotonic() + STREAM_SECONDS
            while time.monotonic() < deadline and not self.stopping:
                changed = None
                with anyio.move_on_after(self._interval):
                    changed = await outbox.get()
                yield f"event: change\ndata: {json.dumps({'uri': changed})}\n\n" if changed else TICK
        except anyio.EndOfStream:  # stopped
            return
        finally:
            self._open.discard(outbox)
            unsubscribe()
            outbox.close()

    def _stalled(self) -> None:
        self._notifier.stats.cut["dashboard"] += 1
        logger.warning("a dashboard page read nothing for %g s: ended its event stream", self._notifier.stall_seconds)


class _BoundedStream(StreamingResponse):
    """A streaming response each of whose writes must be taken within ``stall`` seconds. starlette's own would wait
    in a write to a browser that reads nothing for as long as the connection lives, holding its generator (and so
    the stream's subscription) with it."""

    def __init__(
        self,
        events: AsyncGenerator[str, None],
        stall: float,
        on_stall: Callable[[], None],
        headers: Mapping[str, str],
    ) -> None:
        super().__init__(events, media_type="text/event-stream", headers=headers)
        self._events = events
        self._stall = stall
        self._on_stall = on_stall

    async def stream_response(self, send: Send) -> None:
        async with contextlib.aclosing(self._events):  # the generator's clean-up runs however this ends
            try:
                start = {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
                await send_within(self._stall, send(start))
                async for chunk in self._events:
                    body = {"type": "http.response.body", "body": chunk.encode(self.charset), "more_body": True}
                    await send_within(self._stall, send(body))
                await send_within(self._stall, send({"type": "http.response.body", "body": b"", "more_body": False}))
            except Stalled:
                self._on_stall()  # left incomplete: the HTTP server closes the connection when this returns
