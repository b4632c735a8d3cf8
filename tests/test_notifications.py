"""New monitoring events reach clients of both protocol eras, and logging-level clients get log messages."""

from __future__ import annotations

import warnings
from typing import Any

import anyio
import mcp.types as types
import pytest
from mcp.shared.exceptions import MCPDeprecationWarning

from tests.conftest import ServerFactory, call, connect, wait_samples
from tests.fakes import FakeHostSource

pytestmark = pytest.mark.anyio


async def test_legacy_subscriber_gets_resource_updated(make_server: ServerFactory, host: FakeHostSource) -> None:
    updates: list[str] = []
    logs: list[types.LoggingMessageNotificationParams] = []
    got = anyio.Event()

    async def on_message(message: Any) -> None:
        if isinstance(message, types.ResourceUpdatedNotification):
            updates.append(str(message.params.uri))
            got.set()
        elif isinstance(message, types.LoggingMessageNotification):
            logs.append(message.params)

    server = make_server()
    async with connect(server, mode="legacy", message_handler=on_message) as client:
        caps = client.server_capabilities
        assert caps is not None and caps.resources is not None and caps.resources.subscribe is True
        assert caps.logging is not None
        with warnings.catch_warnings():  # the verbs are deprecated in the 2026 era, still valid for this one
            warnings.simplefilter("ignore", MCPDeprecationWarning)
            await client.subscribe_resource("monitoring://events")
            await client.set_logging_level("warning")
        await call(client, "set_monitoring_thresholds", {"consecutive_samples": 1})
        await call(client, "start_monitoring", {"interval_seconds": 0.1})
        host.set(memory=99)
        with anyio.fail_after(10):
            await got.wait()
        await wait_samples(host, host.samples + 2)
    assert updates[0] == "monitoring://events"
    # memory 99% is critical -> logged at "error", which passes the "warning" floor.
    assert logs and logs[0].level == "error" and logs[0].logger == "monitoring"
    assert logs[0].data["event_type"] == "memory_high"


async def test_2026_listener_gets_resource_updated(make_server: ServerFactory, host: FakeHostSource) -> None:
    server = make_server()
    async with connect(server) as watcher, connect(server) as actor:
        async with watcher.listen(resource_subscriptions=["monitoring://events"]) as subscription:
            await call(actor, "set_monitoring_thresholds", {"consecutive_samples": 1})
            await call(actor, "start_monitoring", {"interval_seconds": 0.1})
            host.set(cpu=97)
            with anyio.fail_after(10):
                async for event in subscription:
                    assert getattr(event, "uri", None) == "monitoring://events"
                    break
        page = await call(watcher, "query_monitoring_events")
    assert "cpu_high" in {e["event_type"] for e in page["events"]}
