"""Drill: a legacy client that subscribes to monitoring://events at log level debug and never reads its GET stream.

The real server runs over HTTP in a subprocess (default socket buffers, so the stuck stream fills after a few
minutes, as in the field), monitoring every 0.1 s with limits every host exceeds. A well-behaved legacy client
subscribes too. The drill measures a quiet minute first, then holds the never-reading client for ``--minutes`` and
prints, per window: sampler ticks per minute, the well-behaved client's notification latency (arrival minus the
sample's time), and the drops and cut streams counted on /metrics; at the end, whether clear_monitoring_events
answered and how fast.

The HTTP server's own write timeout (``http_write_timeout_seconds``) also cuts a connection that takes nothing; pass
``--write-timeout 3600`` to see the notifier's stall bound (``--stall``) act alone.

    python -m tests.benchmarks.drill_slow_consumer [--minutes 5] [--window 30] [--stall 30] [--queue 256]
        [--write-timeout SECONDS]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import anyio
import httpx2
import mcp.types as types
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPDeprecationWarning

from server.notifications import EVENTS_URI
from tests.test_slow_consumers import LEGACY, legacy_session, push_figures, reads_nothing
from tests.test_transports import start_http


class Window:
    """What one stretch of the drill saw."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self.latencies: list[float] = []

    async def samples(self) -> int:
        result = await self._client.call_tool("get_monitoring_status", {})
        assert result.structured_content is not None
        return int(result.structured_content["state"]["samples"])

    def on_log(self, data: Any) -> None:
        if isinstance(data, dict) and isinstance(data.get("last_seen"), int | float):
            self.latencies.append(time.time() - float(data["last_seen"]))

    async def measure(self, seconds: float) -> tuple[float, list[float]]:
        """Ticks per minute over ``seconds``, and the latencies seen meanwhile."""
        self.latencies = []
        before, started = await self.samples(), time.monotonic()
        await anyio.sleep(seconds)  # a drill measures over wall time; tests never do
        ticks = await self.samples() - before
        return ticks * 60 / (time.monotonic() - started), self.latencies


def describe(latencies: list[float]) -> str:
    if not latencies:
        return "no notifications"
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
    return f"latency median {statistics.median(ordered) * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms ({len(ordered)} seen)"


async def drill(minutes: float, window: float, stall: float, queue: int, write_timeout: float | None) -> None:
    out = sys.stdout
    env = {
        "SELF_BUILDING_NOTIFICATION_STALL_SECONDS": str(stall),
        "SELF_BUILDING_NOTIFICATION_QUEUE_MAX": str(queue),
        "SELF_BUILDING_STATUS_MAX_AGE_SECONDS": "0",
    }
    if write_timeout is not None:
        env["SELF_BUILDING_HTTP_WRITE_TIMEOUT_SECONDS"] = str(write_timeout)
    with tempfile.TemporaryDirectory() as tmp:
        proc, base = start_http(Path(tmp), **env)
        try:
            async with httpx2.AsyncClient(timeout=60) as http:
                holder: list[Window] = []

                async def on_message(message: Any) -> None:
                    if isinstance(message, types.LoggingMessageNotification) and holder:
                        holder[0].on_log(message.params.data)

                transport = streamable_http_client(f"{base}/mcp", http_client=http)
                async with Client(transport, mode="legacy", message_handler=on_message) as good:
                    holder.append(Window(good))
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", MCPDeprecationWarning)
                        await good.subscribe_resource(EVENTS_URI)
                        await good.set_logging_level("debug")
                    limits = {"cpu_percent": 0.1, "memory_percent": 0.1, "disk_percent": 0.1, "consecutive_samples": 1}
                    await good.call_tool("set_monitoring_thresholds", limits)
                    await good.call_tool("start_monitoring", {"interval_seconds": 0.1})
                    rate, latencies = await holder[0].measure(min(60.0, window * 2))
                    out.write(f"before: {rate:.0f} ticks/min, {describe(latencies)}\n")
                    session = await legacy_session(http, base)
                    head = "GET /mcp HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n"
                    head += f"mcp-session-id: {session}\r\nmcp-protocol-version: {LEGACY}\r\n\r\n"
                    with reads_nothing(base, head):
                        held = 0.0
                        while held < minutes * 60:
                            rate, latencies = await holder[0].measure(window)
                            held += window
                            figures = await push_figures(http, base)
                            dropped = figures.get(("mcp_notifications_dropped_total", "session"), 0)
                            cut = figures.get(("mcp_push_streams_cut_total", "session"), 0)
                            out.write(
                                f"stuck client held {held / 60:4.1f} min: {rate:.0f} ticks/min, {describe(latencies)}, "
                                f"{dropped:.0f} notifications dropped, {cut:.0f} sessions cut\n"
                            )
                            out.flush()
                        started = time.monotonic()
                        with anyio.move_on_after(30) as waited:
                            await good.call_tool("clear_monitoring_events", {})
                        answer = "no answer in 30 s" if waited.cancelled_caught else "answered"
                        out.write(f"clear_monitoring_events: {answer} ({time.monotonic() - started:.2f} s)\n")
        finally:
            proc.terminate()
            _, log = proc.communicate(timeout=60)
            for line in log.splitlines():  # what the server said about it (warnings and errors)
                if " WARNING " in line or " ERROR " in line:
                    out.write(f"server: {line}\n")


def main(
    minutes: float = 5.0,
    window: float = 30.0,
    stall: float = 30.0,
    queue: int = 256,
    write_timeout: float | None = None,
) -> None:
    anyio.run(drill, minutes, window, stall, queue, write_timeout)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m tests.benchmarks.drill_slow_consumer", description=__doc__)
    parser.add_argument("--minutes", type=float, default=5.0, help="how long the never-reading client is held")
    parser.add_argument("--window", type=float, default=30.0, help="seconds per printed measurement")
    parser.add_argument("--stall", type=float, default=30.0, help="notification_stall_seconds of the server")
    parser.add_argument("--queue", type=int, default=256, help="notification_queue_max of the server")
    parser.add_argument("--write-timeout", type=float, help="http_write_timeout_seconds of the server (its default)")
    args = parser.parse_args()
    main(args.minutes, args.window, args.stall, args.queue, args.write_timeout)
