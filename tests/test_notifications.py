"""New monitoring events reach clients of both protocol eras, and logging-level clients get log messages."""

from __future__ import annotations

import gc
import json
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import anyio
import mcp.types as types
import pytest
from mcp import Client, MCPError
from mcp.server.mcpserver import MCPServer
from mcp.shared.exceptions import MCPDeprecationWarning
from mcp.shared.memory import create_client_server_memory_streams
from mcp.shared.message import SessionMessage
from mcp.types import JSONRPCNotification, JSONRPCRequest

from server.change_feed import ChangeFeed
from server.live_resources import SelfBuildingServer
from server.notifications import EVENTS_URI, Notifier
from server.settings import Settings
from tests.conftest import ServerFactory, as_key, call, connect, wait_samples
from tests.fakes import FakeHostSource
from tests.polling import eventually
from tests.test_deployment_tools import seed_deployment, seed_pending, seed_workspace
from tests.waiting import Heard

pytestmark = pytest.mark.anyio
INFO = {"name": "stuck", "version": "1"}
INITIALIZED = "notifications/initialized"
TOOLS_CHANGED = "notifications/tools/list_changed"


async def test_legacy_subscriber_gets_resource_updated(make_server: ServerFactory, host: FakeHostSource) -> None:
    updates: list[str] = []
    logs: list[types.LoggingMessageNotificationParams] = []
    got, logged = anyio.Event(), anyio.Event()

    async def on_message(message: Any) -> None:
        if isinstance(message, types.ResourceUpdatedNotification):
            updates.append(str(message.params.uri))
            got.set()
        elif isinstance(message, types.LoggingMessageNotification):
            logs.append(message.params)
            logged.set()

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
            await logged.wait()
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


async def collect(subscription: Any, into: list[Any], done: anyio.Event, want: Callable[[list[Any]], bool]) -> None:
    async for event in subscription:
        into.append(event)
        if want(into):
            done.set()
            return


def kinds(events: list[Any]) -> set[str]:
    return {getattr(e, "uri", None) or type(e).__name__ for e in events}


async def test_deployment_changes_reach_a_2026_listener(make_server: ServerFactory, settings: Settings) -> None:
    seed_workspace(settings)
    held = seed_pending(settings)
    uri = f"deployments://{held.id}"
    server = make_server()
    async with connect(server) as watcher, connect(server) as actor:
        listed = {str(r.uri) for r in (await watcher.list_resources()).resources}
        assert uri in listed  # a change held for approval is listed while it wants attention
        before = json.loads((await watcher.read_resource(uri)).contents[0].text)  # type: ignore[union-attr]
        assert before["status"] == "pending_approval"
        events: list[Any] = []
        done = anyio.Event()
        async with watcher.listen(
            resources_list_changed=True, resource_subscriptions=[uri, "improvements://active"]
        ) as subscription:
            want = {uri, "improvements://active", "ResourcesListChanged"}
            async with anyio.create_task_group() as tg:
                tg.start_soon(collect, subscription, events, done, lambda got: want <= kinds(got))
                await call(actor, "approve_change", {"change_id": held.id, "approve": True, "reason": "looks right"})
                with anyio.fail_after(10):
                    await done.wait()
        after = json.loads((await watcher.read_resource(uri)).contents[0].text)  # type: ignore[union-attr]
        listed = {str(r.uri) for r in (await watcher.list_resources()).resources}
    assert after["status"] == "deployed"
    assert uri not in listed  # deployed outside a cycle: nothing watches it any more
    assert {"monitoring://events", "improvements://active"} <= listed


async def test_deployment_changes_reach_a_legacy_subscriber(make_server: ServerFactory, settings: Settings) -> None:
    seed_workspace(settings)
    deployed = seed_deployment(settings)
    uri = f"deployments://{deployed.id}"
    updates: list[str] = []
    got = anyio.Event()

    async def on_message(message: Any) -> None:
        if isinstance(message, types.ResourceUpdatedNotification):
            updates.append(str(message.params.uri))
            got.set()

    server = make_server()
    async with (
        connect(server, mode="legacy", message_handler=on_message) as watcher,
        connect(server) as actor,
    ):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MCPDeprecationWarning)
            await watcher.subscribe_resource(uri)
        rolled = await call(actor, "rollback_deployment", {"deployment_id": deployed.id, "reason": "drill"})
        assert rolled["deployment"]["status"] == "rolled_back"
        with anyio.fail_after(10):
            await got.wait()
        body = json.loads((await watcher.read_resource(uri)).contents[0].text)  # type: ignore[union-attr]
    assert uri in updates and body["status"] == "rolled_back"


async def test_resource_list_change_reaches_a_legacy_session(make_server: ServerFactory, settings: Settings) -> None:
    seed_workspace(settings)
    held = seed_pending(settings)
    changed = anyio.Event()

    async def on_message(message: Any) -> None:
        if isinstance(message, types.ResourceListChangedNotification):
            changed.set()

    server = make_server()
    async with (
        connect(server, mode="legacy", message_handler=on_message) as watcher,
        connect(server) as actor,
    ):
        assert f"deployments://{held.id}" in {str(r.uri) for r in (await watcher.list_resources()).resources}
        await call(actor, "approve_change", {"change_id": held.id, "approve": False, "reason": "not now"})
        with anyio.fail_after(10):
            await changed.wait()
        listed = {str(r.uri) for r in (await watcher.list_resources()).resources}
    assert f"deployments://{held.id}" not in listed


async def test_deployment_resource_hides_other_tenants(make_server: ServerFactory, settings: Settings) -> None:
    seed_workspace(settings)
    held = seed_pending(settings, tenant="acme")
    server = make_server()
    async with connect(server) as client:
        with as_key("globex-reader", ["read"], ["globex"]):
            listed = {str(r.uri) for r in (await client.list_resources()).resources}
            with pytest.raises(MCPError, match="no deployment has id"):
                await client.read_resource(f"deployments://{held.id}")
        with as_key("acme-reader", ["read"], ["acme"]):
            mine = {str(r.uri) for r in (await client.list_resources()).resources}
        with as_key("acme-pusher", ["ingest"], ["acme"]):
            pusher = {str(r.uri) for r in (await client.list_resources()).resources}
    assert f"deployments://{held.id}" not in listed
    assert f"deployments://{held.id}" in mine
    assert f"deployments://{held.id}" not in pusher  # listing deployments takes the read role


async def test_a_tool_added_or_removed_at_run_time_is_announced_to_both_eras(make_server: ServerFactory) -> None:
    legacy_changes: list[str] = []
    legacy_changed = anyio.Event()

    async def on_message(message: Any) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            legacy_changes.append(message.method)
            legacy_changed.set()

    def extra_tool() -> str:
        """A tool an extension registers while the server runs."""
        return "ok"

    server = make_server()
    async with connect(server) as watcher, connect(server, mode="legacy", message_handler=on_message) as legacy:
        before = {t.name for t in (await legacy.list_tools()).tools}  # the session is known once it has asked
        async with watcher.listen(tools_list_changed=True) as subscription:

            async def both_eras_told() -> None:
                nonlocal legacy_changed
                with anyio.fail_after(10):
                    event = await anext(aiter(subscription))
                    assert type(event).__name__ == "ToolsListChanged"
                    await legacy_changed.wait()
                legacy_changed = anyio.Event()

            server.add_tool(extra_tool)
            await both_eras_told()
            added = {t.name for t in (await watcher.list_tools()).tools}
            server.remove_tool("extra_tool")
            await both_eras_told()
        after = {t.name for t in (await legacy.list_tools()).tools}
    assert added - before == {"extra_tool"} and after == before
    assert legacy_changes == ["notifications/tools/list_changed"] * 2


async def test_connections_are_forgotten_when_clients_go(make_server: ServerFactory) -> None:
    server = make_server()
    assert isinstance(server, SelfBuildingServer) and server.notifier is not None
    notifier = server.notifier
    async with connect(server) as keeper:  # keeps the server (and its lifespan) running throughout
        for _ in range(3):
            async with connect(server, mode="legacy") as legacy:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", MCPDeprecationWarning)
                    await legacy.subscribe_resource("monitoring://events")
                    await legacy.set_logging_level("info")
                assert notifier.tracked() == 1
            await forgotten(notifier)
        assert notifier.tracked() == 0
        await call(keeper, "get_system_status")


async def forgotten(notifier: Notifier) -> None:
    """Wait (bounded) until the notifier holds no connection: a closed client's connection is freed once its
    server-side task has ended and the cycle collector has run."""

    def freed() -> bool:
        gc.collect()
        return notifier.tracked() == 0

    await eventually(freed, "the closed client's connection was freed", timeout=10)


@asynccontextmanager
async def reads_nothing(server: MCPServer, subscribe: str) -> AsyncIterator[None]:
    """A legacy connection (in memory, as over stdio) that subscribes to ``subscribe``, asks for every log level,
    and from then on reads nothing: its one-message buffer is full after the first notification."""
    lowlevel = server._lowlevel_server
    asks = [
        ("initialize", {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": INFO}),
        ("resources/subscribe", {"uri": subscribe}),
        ("logging/setLevel", {"level": "debug"}),
    ]
    async with (
        create_client_server_memory_streams() as ((client_read, client_write), (server_read, server_write)),
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(lowlevel.run, server_read, server_write, lowlevel.create_initialization_options())
        for number, (method, params) in enumerate(asks, start=1):
            request = JSONRPCRequest(jsonrpc="2.0", id=number, method=method, params=params)
            await client_write.send(SessionMessage(request))
            with anyio.fail_after(10):  # read up to its answer (notifications may come first)
                while getattr(getattr(await client_read.receive(), "message", None), "id", None) != number:
                    pass
            if method == "initialize":
                await client_write.send(SessionMessage(JSONRPCNotification(jsonrpc="2.0", method=INITIALIZED)))
        yield
        tg.cancel_scope.cancel()


async def test_a_client_that_reads_nothing_holds_up_no_one(make_server: ServerFactory, host: FakeHostSource) -> None:
    updates = Heard()

    async def on_message(message: Any) -> None:
        if isinstance(message, types.ResourceUpdatedNotification):
            updates.append(str(message.params.uri))

    server = make_server(notification_queue_max=4, notification_stall_seconds=2.0)
    assert isinstance(server, SelfBuildingServer) and server.notifier is not None
    async with connect(server, mode="legacy", message_handler=on_message) as watcher, connect(server) as actor:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MCPDeprecationWarning)
            await watcher.subscribe_resource(EVENTS_URI)
        async with reads_nothing(server, EVENTS_URI):
            await call(actor, "set_monitoring_thresholds", {"consecutive_samples": 1, "cpu_spike_points": 100})
            host.set(memory=99, cpu=97, disk=95)
            start = host.samples
            await call(actor, "start_monitoring", {"interval_seconds": 0.1})
            # Every sample changes three events: the stuck client is sent far more than it takes.
            await wait_samples(host, start + 30, timeout=60)
            stats = server.notifier.stats
            # dropped from push once it took nothing for the stall bound (real time: the notifier takes no clock)
            await eventually(lambda: stats.cut["session"] > 0, "the stuck session was dropped from push")
            assert stats.dropped["session"] > 0  # before that, its oldest notifications went first (counted)
            with anyio.fail_after(30):
                await call(actor, "clear_monitoring_events")
            seen, samples = len(updates), host.samples
            await wait_samples(host, samples + 10, timeout=60)
            await updates.until(lambda got: len(got) >= seen + 5, timeout=60)  # the well-behaved one is still told
            assert server.notifier.tracked() == 1 and stats.cut["session"] == 1  # only the stuck one went


async def follow_as(
    client: Client, key: str, tenants: list[str], uris: list[str], into: list[Any], ready: anyio.Event
) -> None:
    """Listen as the key ``key`` (read role on ``tenants``) until the tool list changes (the test's end marker)."""
    with as_key(key, ["read"], tenants):
        async with client.listen(
            tools_list_changed=True, resources_list_changed=True, resource_subscriptions=uris
        ) as subscription:
            ready.set()
            async for event in subscription:
                into.append(event)
                if type(event).__name__ == "ToolsListChanged":
                    return


def marker_tool() -> str:
    """A tool added only to make every client hear of a change after the ones under test."""
    return "ok"


async def test_a_tenants_changes_reach_only_listeners_that_may_read_it(
    make_server: ServerFactory, settings: Settings
) -> None:
    seed_workspace(settings)
    held = seed_pending(settings, tenant="acme")
    uris = [f"deployments://{held.id}", "improvements://active"]
    acme, globex = Heard(), Heard()
    server = make_server()
    async with (
        connect(server) as acme_client,
        connect(server) as globex_client,
        connect(server) as actor,
        anyio.create_task_group() as tg,
    ):
        ready = [anyio.Event(), anyio.Event()]
        tg.start_soon(follow_as, acme_client, "acme-reader", ["acme"], uris, acme, ready[0])
        tg.start_soon(follow_as, globex_client, "globex-reader", ["globex"], uris, globex, ready[1])
        with anyio.fail_after(10):
            for event in ready:
                await event.wait()
        await call(actor, "approve_change", {"change_id": held.id, "approve": True, "reason": "looks right"})
        await acme.until(lambda heard: {*uris, "ResourcesListChanged"} <= kinds(heard))  # published by now
        server.add_tool(marker_tool)  # heard by both after everything above
    assert kinds(globex) == {"ToolsListChanged"}  # nothing of acme's deployment, cycles or listing
    assert kinds(acme) == {*uris, "ResourcesListChanged", "ToolsListChanged"}


async def test_a_tenants_changes_reach_only_legacy_sessions_that_may_read_it(
    make_server: ServerFactory, settings: Settings
) -> None:
    seed_workspace(settings)
    held = seed_pending(settings, tenant="acme")
    uris = [f"deployments://{held.id}", "improvements://active"]
    heard: dict[str, Heard] = {"acme": Heard(), "globex": Heard()}
    told = anyio.Event()

    def recorder(into: list[str]) -> Callable[[Any], Awaitable[None]]:
        async def on_message(message: Any) -> None:
            params = getattr(message, "params", None)
            into.append(str(getattr(params, "uri", None) or message.method))
            if f"deployments://{held.id}" in heard["acme"]:
                told.set()

        return on_message

    server = make_server()
    async with AsyncExitStack() as stack:
        sessions = {}
        for tenant in heard:  # every request of the session as the key (as over HTTP, where the SDK ensures it)
            with as_key(f"{tenant}-reader", ["read"], [tenant]), warnings.catch_warnings():
                warnings.simplefilter("ignore", MCPDeprecationWarning)
                sessions[tenant] = await stack.enter_async_context(
                    connect(server, mode="legacy", message_handler=recorder(heard[tenant]))
                )
                for uri in uris:
                    await sessions[tenant].subscribe_resource(uri)
        actor = await stack.enter_async_context(connect(server))
        await call(actor, "approve_change", {"change_id": held.id, "approve": True, "reason": "looks right"})
        with anyio.fail_after(10):
            await told.wait()
        server.add_tool(marker_tool)  # heard by both after everything above
        for got in heard.values():
            await got.until(lambda got: TOOLS_CHANGED in got)
    assert heard["globex"] == [TOOLS_CHANGED]  # nothing of acme's deployment, cycles or listing
    assert {*uris, "notifications/resources/list_changed"} <= set(heard["acme"][: heard["acme"].index(TOOLS_CHANGED)])


async def test_a_second_lifespan_starting_loses_no_change_marked_before_it() -> None:
    """Each in-memory connection runs the server's lifespan and with it the change feed's publishing loop. A change
    marked while the first loop is busy publishing another must still be published when a second loop starts
    meanwhile (its start used to forget every mark not yet published)."""
    published: list[str] = []
    first_held, release = anyio.Event(), anyio.Event()

    async def updated(uri: str, tenant: str | None) -> None:
        if uri == "deployments://one":
            first_held.set()
            await release.wait()  # the first loop is busy with this one
        published.append(uri)

    async def nothing(*_: Any) -> None:
        return None

    async def watched() -> list[Any]:
        return []

    feed = ChangeFeed(updated, nothing, watched, nothing)
    async with anyio.create_task_group() as group:
        group.start_soon(feed.run)
        await anyio.wait_all_tasks_blocked()
        feed.mark(["deployments://one"], tenant="acme")
        await first_held.wait()
        feed.mark(["deployments://two"], tenant="acme")  # waits for a loop to take it
        group.start_soon(feed.run)  # another connection's lifespan starts
        await anyio.wait_all_tasks_blocked()
        release.set()
        await anyio.wait_all_tasks_blocked()  # every loop has published what it could and waits for the next mark
        group.cancel_scope.cancel()
    assert sorted(published) == ["deployments://one", "deployments://two"]  # each once, by either loop
