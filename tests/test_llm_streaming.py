"""A model on a CPU, through ``generate_component``: answers stream, so the LLM timeout is the most silence (a slow
but steady answer is never cut; a silent one fails after about the timeout, asked once: a retry would have the whole
prompt read again); only a request that got no answer is retried; a local endpoint is sent one request at a time."""

from __future__ import annotations

import anyio
import pytest

from server.settings import Settings
from tests.conftest import call, call_error, connect
from tests.fakes import FakeHostSource
from tests.llm_server import ScriptedLLM
from tests.test_generation_tool import ARGS, build, files, slugify_reply

pytestmark = pytest.mark.anyio


async def test_a_slow_but_steady_answer_longer_than_the_timeout_is_accepted(
    settings: Settings, host: FakeHostSource, scripted_llm: ScriptedLLM
) -> None:
    scripted_llm.reply(slugify_reply(), chunks=15, pace=0.2)  # 3 s of writing, never 1 s silent
    async with connect(build(settings, host, scripted_llm, llm_timeout_seconds=1.0)) as client:
        out = await call(client, "generate_component", ARGS)
    assert out["succeeded"] is True and out["files"] == ["components/slugify.py", "tests/test_slugify.py"]
    assert len(scripted_llm.requests) == 1 and scripted_llm.requests[0]["stream"] is True


async def test_a_model_that_goes_silent_fails_after_the_timeout_and_is_asked_once(
    settings: Settings, host: FakeHostSource, scripted_llm: ScriptedLLM
) -> None:
    scripted_llm.stall_midway(slugify_reply(), 30.0)
    server = build(settings, host, scripted_llm, llm_timeout_seconds=1.0, llm_max_retries=2)
    async with connect(server) as client:
        began = anyio.current_time()
        text = await call_error(client, "generate_component", {**ARGS, "deploy": True})
        ended = anyio.current_time()
        audit = await call(client, "query_audit_log", {"kind": "generation_result"})
    assert ended - began < 30, "it waited for the stall to end"
    assert "timed out: silent for 1 s after" in text and "llm_timeout_seconds" in text, text
    assert len(scripted_llm.requests) == 1  # never asked again from scratch
    assert files(settings.workspace) == {}
    [entry] = audit["entries"]
    assert entry["detail"]["succeeded"] is False and "silent for 1 s" in entry["detail"]["error"]


async def test_a_server_error_is_retried_and_the_answer_used(
    settings: Settings, host: FakeHostSource, scripted_llm: ScriptedLLM
) -> None:
    scripted_llm.fail(500)
    scripted_llm.reply(slugify_reply())
    async with connect(build(settings, host, scripted_llm, llm_max_retries=2)) as client:
        out = await call(client, "generate_component", ARGS)
    assert out["succeeded"] is True and len(scripted_llm.requests) == 2


async def test_a_server_error_is_retried_but_silence_after_it_is_not(
    settings: Settings, host: FakeHostSource, scripted_llm: ScriptedLLM
) -> None:
    scripted_llm.fail(500)
    scripted_llm.stall_midway(slugify_reply(), 30.0)
    server = build(settings, host, scripted_llm, llm_timeout_seconds=1.0, llm_max_retries=2)
    async with connect(server) as client:
        text = await call_error(client, "generate_component", ARGS)
    assert "silent for 1 s after" in text and len(scripted_llm.requests) == 2, text


async def test_concurrent_generations_send_a_local_model_one_request_at_a_time(
    settings: Settings, host: FakeHostSource, scripted_llm: ScriptedLLM
) -> None:
    scripted_llm.reply(slugify_reply(), times=2, chunks=10, pace=0.1)  # each answer takes a second to write
    outs: list[dict[str, object]] = []

    async def generate(client_args: dict[str, object]) -> None:
        outs.append(await call(client, "generate_component", client_args))

    async with connect(build(settings, host, scripted_llm)) as client, anyio.create_task_group() as group:
        group.start_soon(generate, ARGS)
        group.start_soon(generate, ARGS)
    assert [o["succeeded"] for o in outs] == [True, True]
    assert scripted_llm.in_flight == [1, 1]  # the second was sent once the first was answered
