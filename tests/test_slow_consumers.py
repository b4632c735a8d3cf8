"""No client that stops reading can hold anything up, over real HTTP: not a legacy session's GET stream, not a 2026
``subscriptions/listen`` stream, not a dashboard event stream.

The real HTTP app runs under uvicorn in this process, on a listening socket with a small send buffer (inherited by
every connection it accepts), and the never-reading clients are raw sockets with a small receive buffer: a few tens
of kilobytes fill everything between the server and such a client, so the drill takes seconds, not the minutes a
default socket takes. Each client does its protocol's handshake for real, then never reads again. The stall bound
is short, the queues small; every wait is on a condition, bounded by a generous deadline.
"""

from __future__ import annotations

import json
import re
import socket
import warnings
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx2
import mcp.types as types
import pytest
import uvicorn
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPDeprecationWarning

from server.app import create_server
from server.http import build_http_app
from server.live_resources import SelfBuildingServer
from server.notifications import EVENTS_URI
from server.settings import Settings
from tests.conftest import call
from tests.fakes import FakeHostSource, NoGpu
from tests.polling import eventually
from tests.test_transports import HEADERS, INIT

pytestmark = [pytest.mark.anyio, pytest.mark.slow]
STALL_SECONDS = 3.0
QUEUE_MAX = 8
SMALL_BUFFER = 4096
DEADLINE = 60.0
LEGACY = "2025-11-25"
MODERN = "2026-07-28"
# Long URIs make large notifications: a few hundred of them fill a never-reading client's buffers.
BURST = [f"test://burst/{i}/{'x' * 600}" for i in range(300)]


@pytest.fixture
def drill_settings(tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        workspace=tmp_path / "ws",
        status_max_age_seconds=3600,
        notification_queue_max=QUEUE_MAX,
        notification_stall_seconds=STALL_SECONDS,
    )


@pytest.fixture
def busy_host() -> FakeHostSource:
    """A host with many full disks: once monitoring runs, every sample updates one event per disk."""
    return FakeHostSource(mounts=tuple(f"/data{i}" for i in range(16)))


@asynccontextmanager
async def serving(settings: Settings, host: FakeHostSource) -> AsyncIterator[tuple[str, SelfBuildingServer]]:
    """The real HTTP app of a server under uvicorn in this process, on a socket with a small send buffer."""
    server = create_server(settings, host_source=host, gpu_source=NoGpu())
    assert isinstance(server, SelfBuildingServer)
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SMALL_BUFFER)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    config = uvicorn.Config(
        build_http_app(server, settings), log_config=None, lifespan="on", timeout_graceful_shutdown=1
    )
    uv = uvicorn.Server(config)
    with listener:
        async with anyio.create_task_group() as tg:
            tg.start_soon(uv.serve, [listener])  # the socket listens already: a request waits until it is served
            try:
                yield f"http://127.0.0.1:{listener.getsockname()[1]}", server
            finally:
                uv.should_exit = True


@contextmanager
def reads_nothing(base: str, request: str) -> Iterator[socket.socket]:
    """A raw connection with a small receive buffer that sends ``request`` (the head of it; the body follows the
    blank line) and then reads nothing until the test reads it."""
    port = int(base.rsplit(":", 1)[1])
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL_BUFFER)
    sock.connect(("127.0.0.1", port))  # the kernel completes the handshake: this does not wait for the server
    try:
        sock.sendall(request.replace("{host}", f"127.0.0.1:{port}").encode())
        sock.setblocking(False)
        yield sock
    finally:
        sock.close()


async def read_all(sock: socket.socket, until: Callable[[bytes], bool]) -> bytes:
    """What the server sent on ``sock``, read until ``until`` holds (bounded)."""
    got = b""
    with anyio.fail_after(DEADLINE):
        while not until(got):
            await anyio.wait_readable(sock)
            chunk = sock.recv(65536)
            got += chunk
            if not chunk:
                break
    return got


async def push_figures(http: httpx2.AsyncClient, base: str) -> dict[tuple[str, str], float]:
    """The push counters of ``/metrics``: (name, stream) -> value."""
    text = (await http.get(f"{base}/metrics")).text
    found = re.findall(
        r'^(mcp_notifications_dropped_total|mcp_push_streams_cut_total)\{stream="(\w+)"\} (\S+)$', text, re.M
    )
    return {(name, stream): float(value) for name, stream, value in found}


async def legacy_session(http: httpx2.AsyncClient, base: str) -> str:
    """A legacy session, handshaken over plain POSTs, subscribed to monitoring://events with every log level."""
    opened = await http.post(f"{base}/mcp", json=INIT, headers=HEADERS)
    assert opened.status_code == 200, opened.text
    session = opened.headers["mcp-session-id"]
    headers = {**HEADERS, "mcp-session-id": session, "mcp-protocol-version": LEGACY}
    done = await http.post(
        f"{base}/mcp", json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=headers
    )
    assert done.status_code == 202, done.text
    asks = [("resources/subscribe", {"uri": EVENTS_URI}), ("logging/setLevel", {"level": "debug"})]
    for number, (method, params) in enumerate(asks, start=2):
        request = {"jsonrpc": "2.0", "id": number, "method": method, "params": params}
        answer = await http.post(f"{base}/mcp", json=request, headers=headers)
        assert answer.status_code == 200 and '"result"' in answer.text, answer.text
    return session


async def test_a_legacy_session_that_never_reads_its_stream_holds_up_no_one(
    drill_settings: Settings, busy_host: FakeHostSource
) -> None:
    updates: list[str] = []

    async def on_message(message: Any) -> None:
        if isinstance(message, types.ResourceUpdatedNotification):
            updates.append(str(message.params.uri))

    async with (
        serving(drill_settings, busy_host) as (base, _),
        httpx2.AsyncClient(timeout=30) as http,
        Client(
            streamable_http_client(f"{base}/mcp", http_client=http), mode="legacy", message_handler=on_message
        ) as good,
    ):
        with warnings.catch_warnings():  # the verb is deprecated in the 2026 era, still valid for this one
            warnings.simplefilter("ignore", MCPDeprecationWarning)
            await good.subscribe_resource(EVENTS_URI)
        session = await legacy_session(http, base)
        stream = f"GET /mcp HTTP/1.1\r\nHost: {{host}}\r\nAccept: text/event-stream\r\nmcp-session-id: {session}\r\n"
        with reads_nothing(base, f"{stream}mcp-protocol-version: {LEGACY}\r\n\r\n") as stuck:
            await read_all(stuck, lambda got: b"\r\n\r\n" in got)  # the stream's head; from here on, nothing is read
            await call(good, "set_monitoring_thresholds", {"consecutive_samples": 1, "disk_percent": 50})
            busy_host.set(disk=99)
            await call(good, "start_monitoring", {"interval_seconds": 0.1})

            # Each sample logs 16 events (~7 KB) to the stuck session: far past its buffers after 60 samples.
            async def good_client_keeps_getting_updates() -> bool:
                return len(updates) >= 60

            await eventually(good_client_keeps_getting_updates, "the well-behaved client got 60 updates")

            async def stuck_session_was_cut() -> bool:
                return (await push_figures(http, base)).get(("mcp_push_streams_cut_total", "session"), 0) >= 1

            await eventually(stuck_session_was_cut, "the stuck session was dropped from push")
            figures = await push_figures(http, base)
            assert figures[("mcp_notifications_dropped_total", "session")] > 0  # its oldest went first, counted
            with anyio.fail_after(DEADLINE):
                cleared = await call(good, "clear_monitoring_events")
            assert cleared["deleted"] > 0
            samples = (await call(good, "get_monitoring_status"))["state"]["samples"]
            seen = len(updates)

            async def monitoring_goes_on() -> bool:
                state = (await call(good, "get_monitoring_status"))["state"]
                return bool(state["samples"] >= samples + 10 and len(updates) >= seen + 5)

            await eventually(monitoring_goes_on, "monitoring kept sampling and telling the well-behaved client")
            # The stuck session is closed: its next request is refused, so its client starts (and subscribes) anew.
            ping = {"jsonrpc": "2.0", "id": 9, "method": "ping"}
            refused = await http.post(
                f"{base}/mcp", json=ping, headers={**HEADERS, "mcp-session-id": session, "mcp-protocol-version": LEGACY}
            )
            assert refused.status_code == 404
            final = await push_figures(http, base)
        assert final[("mcp_push_streams_cut_total", "session")] == 1  # only the stuck one


async def test_a_listen_stream_that_is_never_read_is_ended_and_others_go_on(
    drill_settings: Settings, busy_host: FakeHostSource
) -> None:
    async with (
        serving(drill_settings, busy_host) as (base, server),
        httpx2.AsyncClient(timeout=30) as http,
        Client(streamable_http_client(f"{base}/mcp", http_client=http)) as good,
    ):
        assert server.notifier is not None
        meta = {
            "io.modelcontextprotocol/protocolVersion": MODERN,
            "io.modelcontextprotocol/clientInfo": {"name": "stuck", "version": "1"},
            "io.modelcontextprotocol/clientCapabilities": {},
        }
        listen = {
            "jsonrpc": "2.0",
            "id": "stuck-1",
            "method": "subscriptions/listen",
            "params": {"notifications": {"resourceSubscriptions": BURST}, "_meta": meta},
        }
        body = json.dumps(listen)
        head = (
            f"POST /mcp HTTP/1.1\r\nHost: {{host}}\r\nAccept: application/json, text/event-stream\r\n"
            f"Content-Type: application/json\r\nmcp-protocol-version: {MODERN}\r\nmcp-method: subscriptions/listen\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        async with good.listen(resource_subscriptions=[EVENTS_URI]) as subscription:
            with reads_nothing(base, head + body) as stuck:
                await read_all(stuck, lambda got: b"notifications/subscriptions/acknowledged" in got)  # then no more
                for uri in BURST:  # far more than the stream's buffers and its queue hold
                    await server.notifier.resource_updated(uri)

                async def stuck_stream_was_cut() -> bool:
                    return (await push_figures(http, base)).get(("mcp_push_streams_cut_total", "listen"), 0) >= 1

                await eventually(stuck_stream_was_cut, "the stuck listen stream was ended")
                figures = await push_figures(http, base)
                assert figures[("mcp_notifications_dropped_total", "listen")] > 0
                assert len(server.notifier.listen) == 1  # the stuck one let go of everything it held: one is left
                # The well-behaved listener is still told: monitoring raises events, and it hears of them.
                await call(good, "set_monitoring_thresholds", {"consecutive_samples": 1, "disk_percent": 50})
                busy_host.set(disk=99)
                await call(good, "start_monitoring", {"interval_seconds": 0.1})
                with anyio.fail_after(DEADLINE):
                    event = await anext(aiter(subscription))
                assert getattr(event, "uri", None) == EVENTS_URI
                with anyio.fail_after(DEADLINE):
                    assert (await call(good, "clear_monitoring_events"))["deleted"] >= 0
                # When the stuck client reads at last, its stream ends with an error that says what to do.
                ended = await read_all(stuck, lambda got: b"listen again" in got)
        assert b"listen again" in ended


async def test_a_dashboard_stream_that_is_never_read_is_ended_and_others_go_on(
    drill_settings: Settings, busy_host: FakeHostSource
) -> None:
    lines: list[str] = []

    async with (
        serving(drill_settings, busy_host) as (base, server),
        httpx2.AsyncClient(timeout=30) as http,
        http.stream("GET", f"{base}/dashboard/api/stream") as good,
        anyio.create_task_group() as reader,
    ):
        assert server.notifier is not None and good.status_code == 200

        async def read_good() -> None:  # a page that reads all the time
            async for line in good.aiter_lines():
                lines.append(line)  # noqa: PERF401 - one at a time: the test watches the list as it grows

        reader.start_soon(read_good)
        with reads_nothing(base, "GET /dashboard/api/stream HTTP/1.1\r\nHost: {host}\r\n\r\n") as stuck:
            await read_all(stuck, lambda got: b"retry: " in got)  # the stream is open; from here on, nothing is read
            for uri in BURST:
                await server.notifier.resource_updated(uri)

            async def stuck_stream_was_cut() -> bool:
                return (await push_figures(http, base)).get(("mcp_push_streams_cut_total", "dashboard"), 0) >= 1

            await eventually(stuck_stream_was_cut, "the stuck dashboard stream was ended")
            figures = await push_figures(http, base)
            assert figures[("mcp_notifications_dropped_total", "dashboard")] > 0
            # The server cut the stuck connection: reading it now finds what was buffered, then its end (EOF, the
            # response left incomplete: no last chunk).
            ended = await read_all(stuck, lambda got: False)
            assert b"test://burst/0/" in ended and not ended.endswith(b"0\r\n\r\n")
            # The page that reads is still told of changes.
            await server.notifier.resource_updated("test://after")

            async def good_page_told() -> bool:
                return 'data: {"uri": "test://after"}' in lines

            await eventually(good_page_told, "the page that reads was told of a change after the cut")
            final = await push_figures(http, base)
        assert lines[0].startswith("retry: ")
        assert final[("mcp_push_streams_cut_total", "dashboard")] == 1  # only the stuck one
        reader.cancel_scope.cancel()
