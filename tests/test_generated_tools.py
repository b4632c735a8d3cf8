"""Tools the server writes for itself, end to end through the MCP client with the scripted model: asked for, validated,
deployed, served live as ``gen_<name>_<hash>`` to its tenant only (announced with a tool list-changed
notification), called in its jailed worker, served again after a restart, and removed by the rollback of the
deployment that brought it; each registration and removal audited."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.server.mcpserver import MCPServer

from server.databases import Databases
from server.notifications import EVENTS_URI
from server.settings import Settings
from tests.backend import store_of
from tests.conftest import as_key, call, call_error, connect
from tests.fake_clock import FakeClock
from tests.fakes import FakeHostSource
from tests.llm_server import ScriptedLLM
from tests.polling import eventually
from tests.test_generation_tool import build
from tests.waiting import cycle_when, finished, first_candidate_in
from tools.generated_tools import GENERATED_LABEL, tool_name

pytestmark = pytest.mark.anyio
NAME = tool_name("acme", "duration_seconds")
ARGS = {
    "component_type": "tool",
    "name": "duration_seconds",
    "requirements": "Convert a duration like '1h30m' to seconds.",
    "tenant_id": "acme",
    "deploy": True,
}
REPLY = '''components/acme/duration_seconds.py
```python
"""Durations as seconds."""

import re

from pydantic import BaseModel, Field


class Duration(BaseModel):
    """A duration."""

    seconds: int = Field(description="Whole seconds.")


def duration_seconds(text: str) -> Duration:
    """Seconds in a duration such as '1h30m' (units h, m and s)."""
    found = re.findall(r"(\\d+)([hms])", text)
    if not found:
        raise ValueError(f"not a duration: {text!r}")
    scale = {"h": 3600, "m": 60, "s": 1}
    return Duration(seconds=sum(int(number) * scale[unit] for number, unit in found))
```

tests/acme/test_duration_seconds.py
```python
"""Tests of duration_seconds."""

import pytest

from components.acme.duration_seconds import duration_seconds


def test_hours_and_minutes() -> None:
    """1h30m is 5400 s."""
    assert duration_seconds("1h30m").seconds == 5400


def test_not_a_duration() -> None:
    """Text without a unit is refused."""
    with pytest.raises(ValueError):
        duration_seconds("soon")
```
'''


@asynccontextmanager
async def tool_list_change(client: Client) -> AsyncIterator[anyio.Event]:
    """An event set when the client hears that the tool list changed (listening from the start of the block)."""
    heard = anyio.Event()
    async with client.listen(tools_list_changed=True) as subscription, anyio.create_task_group() as group:

        async def wait() -> None:
            async for event in subscription:
                if type(event).__name__ == "ToolsListChanged":
                    heard.set()
                    return

        group.start_soon(wait)
        yield heard
        group.cancel_scope.cancel()


async def names(client: Client) -> set[str]:
    return {t.name for t in (await client.list_tools()).tools}


async def generated(client: Client) -> dict[str, dict[str, Any]]:
    read = await client.read_resource("tools://generated")
    return {t["tool"]: t for t in json.loads(read.contents[0].text)["tools"]}  # type: ignore[union-attr]


async def test_a_tool_is_built_served_to_its_tenant_survives_a_restart_and_goes_with_its_rollback(
    settings: Settings, host: FakeHostSource, scripted_llm: ScriptedLLM
) -> None:
    scripted_llm.reply(REPLY)
    async with connect(build(settings, host, scripted_llm)) as client:
        async with tool_list_change(client) as changed:
            out = await call(client, "generate_component", ARGS)
            assert out["succeeded"] and out["deployment"]["status"] == "deployed", out["validation_text"]
            with anyio.fail_after(30):
                await changed.wait()
        with as_key("acme-reader", ["read"], ["acme"]):
            [tool] = [t for t in (await client.list_tools()).tools if t.name == NAME]
            assert tool.description == "Seconds in a duration such as '1h30m' (units h, m and s)."
            assert tool.input_schema["required"] == ["text"] and tool.annotations is not None
            answer = await client.call_tool(NAME, {"text": "1h30m"})
            assert not answer.is_error and answer.structured_content == {"seconds": 5400}
            refused = await call_error(client, NAME, {"text": "soon"})
            assert "ValueError: not a duration: 'soon'" in refused
        with as_key("globex-reader", ["read"], ["globex"]):
            assert NAME not in await names(client)
            assert "Unknown tool" in await call_error(client, NAME, {"text": "1h"})
            assert await generated(client) == {}
            counted = (await call(client, "get_system_status"))["server"]["calls_by_tool"]
        assert re.fullmatch(r"[A-Za-z0-9_-]{1,64}", NAME)  # what every MCP client accepts
        assert NAME not in counted and counted[GENERATED_LABEL] == 2  # acme's two calls; globex's was unknown
    deployment_id = out["deployment"]["deployment_id"]

    async with connect(build(settings, host, scripted_llm)) as client:  # a restart: served again, counts kept
        with as_key("acme-reader", ["read"], ["acme"]):
            assert (await call(client, NAME, {"text": "2m5s"})) == {"seconds": 125}
            listed = (await generated(client))[NAME]
        assert (listed["version"], listed["status"], listed["calls"], listed["failures"]) == (1, "active", 3, 1)
        async with tool_list_change(client) as changed:
            await call(client, "rollback_deployment", {"deployment_id": deployment_id, "reason": "not wanted"})
            with anyio.fail_after(30):
                await changed.wait()
        with as_key("acme-reader", ["read"], ["acme"]):
            assert NAME not in await names(client)
            assert "Unknown tool" in await call_error(client, NAME, {"text": "1h"})
            assert (await generated(client))[NAME]["status"] == "removed"
        audit = await call(client, "query_audit_log", {"limit": 500})
    kinds = [e["kind"] for e in audit["entries"] if e["kind"].startswith("generated_tool")]
    assert sorted(kinds) == ["generated_tool_registered", "generated_tool_removed"], kinds


async def test_a_tenants_tool_changes_reach_only_listeners_that_may_read_it(
    settings: Settings, host: FakeHostSource, scripted_llm: ScriptedLLM
) -> None:
    """acme's new tool is announced to keys that may read acme (and admins), not to globex's: that acme's tools
    changed, and when, is none of globex's business."""
    scripted_llm.reply(REPLY)
    heard: dict[str, list[str]] = {"acme": [], "globex": []}
    server = build(settings, host, scripted_llm)

    async def follow(client: Client, tenant: str, ready: anyio.Event) -> None:
        with as_key(f"{tenant}-reader", ["read"], [tenant]):
            async with client.listen(tools_list_changed=True, resource_subscriptions=[EVENTS_URI]) as subscription:
                ready.set()
                async for event in subscription:
                    heard[tenant].append(getattr(event, "uri", type(event).__name__))

    async with (
        connect(server) as acme,
        connect(server) as globex,
        connect(server) as actor,
        anyio.create_task_group() as group,
    ):
        ready = [anyio.Event(), anyio.Event()]
        group.start_soon(follow, acme, "acme", ready[0])
        group.start_soon(follow, globex, "globex", ready[1])
        with anyio.fail_after(10):
            for event in ready:
                await event.wait()
        assert (await call(actor, "generate_component", ARGS))["succeeded"]
        await eventually(lambda: "ToolsListChanged" in heard["acme"], "acme's listener heard of its new tool")
        # A change every listener hears, published after that one: on globex's stream it comes after anything of
        # acme's it would have been told.
        await call(actor, "clear_monitoring_events")
        await eventually(lambda: EVENTS_URI in heard["globex"], "globex's listener heard the later change")
        group.cancel_scope.cancel()
    assert heard["globex"][: heard["globex"].index(EVENTS_URI)] == [], heard


async def test_a_model_that_resends_its_failed_tool_is_told_again_what_was_wrong_and_asked_for_whole_files(
    settings: Settings, host: FakeHostSource, scripted_llm: ScriptedLLM
) -> None:
    """What a small local model does: a first tool that fails its tests, then the same files again. The next message
    repeats the failure (not only "nothing changed") and asks for both files anew; the third reply is accepted."""
    broken = REPLY.replace("scale[unit]", "scales[unit]")  # NameError in its tests
    scripted_llm.reply(broken)
    scripted_llm.reply(broken)
    scripted_llm.reply(REPLY)
    async with connect(build(settings, host, scripted_llm)) as client:
        out = await call(client, "generate_component", {**ARGS, "deploy": False})
    assert [r["outcome"] for r in out["rounds"]] == ["validation_failed", "no_change", "accepted"], out["rounds"]
    third = scripted_llm.requests[2]["messages"][-1]["content"]
    assert "sent the same files again" in third and "NameError" in third, third
    assert "components/acme/duration_seconds.py and its tests again, each as a whole file" in third, third
    assert "The files as they are now" not in third  # written anew, not patched


async def test_a_reply_that_forgets_its_imports_is_repaired_and_says_so(
    settings: Settings, host: FakeHostSource, scripted_llm: ScriptedLLM
) -> None:
    """What Qwen2.5-Coder-1.5B sends: ``re.findall`` with no ``import re``, ``pytest.raises`` with no ``import
    pytest``. The server adds those imports (of standard modules and pytest only), says so in the round, and the
    validation judges the repaired files like any others."""
    scripted_llm.reply(REPLY.replace("import re\n\n", "").replace("import pytest\n\n", ""))
    async with connect(build(settings, host, scripted_llm)) as client:
        out = await call(client, "generate_component", ARGS)
        assert out["succeeded"], out["validation_text"]
        assert out["message"].endswith(f"; served as tool {NAME} (version 1)"), out["message"]
        with as_key("acme-reader", ["read"], ["acme"]):  # served by the time the answer comes
            assert await call(client, NAME, {"text": "1h30m"}) == {"seconds": 5400}
    [accepted] = out["rounds"]
    assert accepted["repairs"] == [
        "components/acme/duration_seconds.py used re without importing it: the server added `import re`",
        "tests/acme/test_duration_seconds.py used pytest without importing it: the server added `import pytest`",
    ]
    code = (settings.workspace / "components/acme/duration_seconds.py").read_text(encoding="utf-8")
    assert code.startswith('"""Durations as seconds."""\n\nimport re\n'), code


async def test_a_system_tool_waits_for_approval_and_is_served_once_approved(
    settings: Settings, host: FakeHostSource, scripted_llm: ScriptedLLM
) -> None:
    scripted_llm.reply(REPLY.replace("components/acme/", "components/system/").replace("tests/acme/", "tests/system/")
                       .replace("components.acme.", "components.system."))  # fmt: skip
    name = tool_name("system", "duration_seconds")
    async with connect(build(settings, host, scripted_llm)) as client:
        out = await call(client, "generate_component", {**ARGS, "tenant_id": "system"})
        held = out["deployment"]
        assert out["succeeded"] and held["status"] == "pending_approval", out["validation_text"]
        assert name not in await names(client)  # not served while it waits
        async with tool_list_change(client) as changed:
            decided = {"change_id": held["deployment_id"], "approve": True, "reason": "a useful tool"}
            await call(client, "approve_change", decided)
            with anyio.fail_after(30):
                await changed.wait()
        assert (await call(client, name, {"text": "45s"})) == {"seconds": 45}
        with as_key("acme-reader", ["read"], ["acme"]):  # system's tools are the admins' (and system keys')
            assert name not in await names(client)


SLOW = REPLY.replace("import re\n", "import re\nimport time\n").replace(
    "    scale = {", "    time.sleep(0.2)  # stands for slow work\n    scale = {"
)
FASTER = """components/acme/duration_seconds.py
```python
<<<<<<< SEARCH
import re
import time
=======
import re
>>>>>>> REPLACE
```

components/acme/duration_seconds.py
```python
<<<<<<< SEARCH
    time.sleep(0.2)  # stands for slow work
    scale = {"h": 3600, "m": 60, "s": 1}
=======
    scale = {"h": 3600, "m": 60, "s": 1}
>>>>>>> REPLACE
```
"""


async def opportunities(client: Client, clock: FakeClock) -> list[dict[str, Any]]:
    """acme's opportunities for its tool, once the self-analysis (on the clock: 10 s after start-up, then hourly)
    has found any."""
    seen: list[dict[str, Any]] = []

    async def found() -> bool:
        clock.advance(10)
        insights = await call(client, "query_telemetry_insights", {"tenant_id": "acme"})
        seen[:] = [o for o in insights["opportunities"] if o["component"] == "duration_seconds"]
        return bool(seen)

    await eventually(found, "an opportunity for acme's tool", timeout=30, every=0.1)
    return seen


async def test_a_tool_whose_code_fails_becomes_an_opportunity_of_its_tenant(
    settings: Settings, host: FakeHostSource, scripted_llm: ScriptedLLM
) -> None:
    """A tool that crashes (here a KeyError on an unknown unit) is a fault of its code: the self-analysis counts it
    as a crash and makes it an opportunity of the tool's tenant, on its error rate. Its ValueError for input it
    cannot handle is its answer to that input, counted as a refusal."""
    crashing = REPLY.replace("([hms])", "([hmsd])")
    assert crashing != REPLY
    scripted_llm.reply(crashing)
    clock = FakeClock()
    server = build(settings, host, scripted_llm, clock=clock, self_analysis_interval_hours=1.0)
    async with connect(server) as client:
        assert (await call(client, "generate_component", ARGS))["succeeded"]
        with as_key("acme-reader", ["read"], ["acme"]):
            for _ in range(6):
                assert "ValueError: not a duration" in await call_error(client, NAME, {"text": "soon"})
            for _ in range(6):
                assert "KeyError: 'd'" in await call_error(client, NAME, {"text": "2d"})
        report = await call(client, "analyze_self", {"lookback_hours": 1})
        [failures] = [t for t in report["failure_patterns"]["tools"] if t["tool"] == NAME]
        assert failures["by_kind"] == {"refused": 6, "internal": 6}, failures  # its refusals, and its crashes
        seen = await opportunities(client, clock)
    assert [o["metric"] for o in seen] == ["tool_error_rate_percent"], seen


async def test_a_slow_tool_is_improved_by_a_cycle_kept_rolled_back_to_its_first_version_and_removed(
    settings: Settings, host: FakeHostSource, scripted_llm: ScriptedLLM
) -> None:
    """The loop the server exists for: a tool it built is slow in its calls; the self-analysis sees it and names its
    component for its tenant; a cycle writes a second version (still a tool), serves it, judges it on the tool's
    own calls before and after and keeps it; it survives a restart; rolling it back serves the first version again,
    and rolling that back removes the tool. Every change of the tool set is notified."""
    scripted_llm.reply(SLOW)
    scripted_llm.reply(FASTER)
    clock = FakeClock()
    module = settings.workspace / "components/acme/duration_seconds.py"

    def server() -> MCPServer:
        overrides = {
            "self_analysis_interval_hours": 1.0, "self_analysis_slow_seconds": 0.1,
            "improvement_monitoring_seconds": 600.0, "improvement_wait_seconds": 0,
        }  # fmt: skip
        return build(settings, host, scripted_llm, clock=clock, **overrides)

    async def calls(count: int) -> None:
        with as_key("acme-reader", ["read"], ["acme"]):
            for _ in range(count):
                assert await call(client, NAME, {"text": "1h30m"}) == {"seconds": 5400}

    async with connect(server()) as client:
        async with tool_list_change(client) as changed:
            first = await call(client, "generate_component", ARGS)
            assert first["succeeded"] and first["deployment"]["status"] == "deployed", first["validation_text"]
            with anyio.fail_after(30):
                await changed.wait()
        slow_code = module.read_bytes()
        await calls(6)

        seen = await opportunities(client, clock)
        assert seen[0]["metric"] == "tool_latency_p95_ms", seen
        default = await call(client, "query_telemetry_insights", {"tenant_id": "default"})
        assert not [o for o in default["opportunities"] if o["component"] == "duration_seconds"]

        async with tool_list_change(client) as changed:
            started = await call(client, "trigger_improvement_cycle", {"tenant_id": "acme", "max_improvements": 1})
            cycle = await cycle_when(client, started["cycle_id"], first_candidate_in("monitoring"))
            with anyio.fail_after(30):
                await changed.wait()
        assert (await generated(client))[NAME]["version"] == 2 and module.read_bytes() != slow_code
        request = scripted_llm.requests[1]["messages"][-1]["content"]
        assert "This module is a tool that AI agents call: keep its public function duration_seconds" in request
        clock.advance(1)  # the second version's calls come after its deployment
        await calls(6)
        clock.advance(600)  # the end of the monitoring period: the verdict
        cycle = await cycle_when(client, started["cycle_id"], finished)
        await calls(1)  # the first call 5 s after the counters were last saved saves them (a crash loses no more)
        with store_of(settings, Databases.tools) as store:
            await eventually(lambda: [(r.calls, r.failures) for r in store.all()] == [(13, 0)], "the 13 calls saved")
    (candidate,) = cycle["candidates"]
    assert candidate["status"] == "kept", (candidate["status"], candidate["message"], candidate["reasons"])
    telemetry = candidate["figures"]["telemetry"]
    assert (telemetry["before_points"], telemetry["after_points"]) == (6, 6), telemetry
    assert telemetry["before_mean"] > 200 > 50 > telemetry["after_mean"], telemetry  # ms per call

    async with connect(server()) as client:  # a restart: the kept version is served
        await calls(1)
        assert (await generated(client))[NAME]["version"] == 2
        async with tool_list_change(client) as changed:
            await call(client, "rollback_deployment", {"deployment_id": candidate["deployment_id"], "reason": "v1"})
            with anyio.fail_after(30):
                await changed.wait()
        assert module.read_bytes() == slow_code
        listed = (await generated(client))[NAME]
        assert (listed["version"], listed["status"]) == (1, "active"), listed  # the first version, by its number
        await calls(1)  # answered by the first version again
        async with tool_list_change(client) as changed:
            gone = {"deployment_id": first["deployment"]["deployment_id"], "reason": "not wanted"}
            await call(client, "rollback_deployment", gone)
            with anyio.fail_after(30):
                await changed.wait()
        with as_key("acme-reader", ["read"], ["acme"]):
            assert NAME not in await names(client)
        audit = await call(client, "query_audit_log", {"limit": 500})
    kinds = [e["kind"] for e in reversed(audit["entries"]) if e["kind"].startswith("generated_tool")]
    registered = ["generated_tool_registered"] * 3  # the first version, the second, the first again
    assert kinds == [*registered, "generated_tool_removed"], kinds
