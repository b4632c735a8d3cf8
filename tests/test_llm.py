"""The LLM client against a local OpenAI-compatible server: streamed answers and usage, one retry layer that never
retries an answer that went silent, silence (not wall clock) timeouts, concurrency, spend caps, breaker."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from generators.deploy import SqliteAuditLog
from generators.llm import (
    LLMClient,
    LLMConfig,
    LLMNotConfigured,
    LLMUnavailable,
    Message,
    SpendCapReached,
    SpendLedger,
    SpendScope,
    spend_scope,
)
from tests.llm_server import ScriptedLLM

pytestmark = pytest.mark.anyio
ASK = [Message("system", "You write Python."), Message("user", "Write hello world")]


def client(llm: ScriptedLLM, **overrides: object) -> LLMClient:
    config = LLMConfig.model_validate({"base_url": llm.base_url, "model": "scripted-1", "api_key": "k", **overrides})
    return LLMClient(config)


async def test_an_answer_comes_back_with_usage_and_latency(scripted_llm: ScriptedLLM) -> None:
    scripted_llm.reply("print('hello world')")
    llm = client(scripted_llm)
    answer = await llm.complete(ASK)
    await llm.close()
    assert answer.text == "print('hello world')" and answer.model == "scripted-1"
    assert answer.prompt_tokens == 6 and answer.completion_tokens == 2 and answer.latency_ms > 0
    assert llm.stats.calls == 1 and llm.stats.prompt_tokens == 6 and llm.stats.failures == 0
    [request] = scripted_llm.requests
    assert request["model"] == "scripted-1" and [m["role"] for m in request["messages"]] == ["system", "user"]


async def test_rate_limits_and_server_errors_are_retried_once_per_layer(scripted_llm: ScriptedLLM) -> None:
    scripted_llm.fail(429)
    scripted_llm.fail(500)
    scripted_llm.reply("ok")
    llm = client(scripted_llm, max_retries=2)
    answer = await llm.complete(ASK)
    await llm.close()
    assert answer.text == "ok" and len(scripted_llm.requests) == 3


async def test_a_failing_endpoint_sees_max_retries_plus_one_requests(scripted_llm: ScriptedLLM) -> None:
    scripted_llm.fail(500, times=10)
    llm = client(scripted_llm, max_retries=1)
    with pytest.raises(LLMUnavailable, match="HTTP 500"):
        await llm.complete(ASK)
    await llm.close()
    assert len(scripted_llm.requests) == 2  # one retry layer: the openai client's
    assert llm.stats.failures == 1 and llm.stats.last_error is not None


async def test_a_timeout_is_a_clear_error(scripted_llm: ScriptedLLM) -> None:
    scripted_llm.stall(2.0)
    llm = client(scripted_llm, timeout_seconds=0.3, max_retries=0)
    with pytest.raises(LLMUnavailable, match="timed out"):
        await llm.complete(ASK)
    await llm.close()


async def test_the_breaker_opens_and_stops_asking(scripted_llm: ScriptedLLM) -> None:
    scripted_llm.fail(500, times=10)
    llm = client(scripted_llm, max_retries=0, breaker_failure_threshold=2, breaker_cooldown_seconds=60)
    for _ in range(2):
        with pytest.raises(LLMUnavailable, match="HTTP 500"):
            await llm.complete(ASK)
    with pytest.raises(LLMUnavailable, match="2 times in a row"):
        await llm.complete(ASK)
    await llm.close()
    assert len(scripted_llm.requests) == 2 and llm.stats.breaker_state == "open"


async def test_the_breaker_probes_after_the_cooldown(scripted_llm: ScriptedLLM) -> None:
    now = [0.0]
    scripted_llm.fail(500)
    scripted_llm.reply("back")
    config = LLMConfig(base_url=scripted_llm.base_url, model="m", max_retries=0, breaker_failure_threshold=1)
    llm = LLMClient(config, clock=lambda: now[0])
    with pytest.raises(LLMUnavailable):
        await llm.complete(ASK)
    now[0] = 61.0
    assert (await llm.complete(ASK)).text == "back"
    await llm.close()
    assert llm.stats.breaker_state == "closed"


async def test_no_model_configured_names_the_settings() -> None:
    llm = LLMClient(LLMConfig())
    assert not llm.configured
    with pytest.raises(LLMNotConfigured, match="SELF_BUILDING_LLM_MODEL"):
        await llm.complete(ASK)


def test_settings_build_the_llm_config_with_openai_fallbacks() -> None:
    from server.settings import Settings
    from server.settings_load import llm_config

    plain = Settings(llm_model="qwen2.5-coder")
    config = llm_config(plain, {"OPENAI_API_KEY": "sk-env", "OPENAI_BASE_URL": "http://127.0.0.1:11434/v1"})
    assert config.configured and config.base_url == "http://127.0.0.1:11434/v1"
    assert config.api_key is not None and config.api_key.get_secret_value() == "sk-env"
    own = Settings(llm_model="m", llm_base_url="http://vllm:8000/v1", llm_api_key="sk-own")
    config = llm_config(own, {"OPENAI_API_KEY": "sk-env", "OPENAI_BASE_URL": "http://elsewhere/v1"})
    assert config.base_url == "http://vllm:8000/v1" and config.api_key is not None
    assert config.api_key.get_secret_value() == "sk-own" and "sk-own" not in repr(config)
    assert not llm_config(Settings(), {}).configured


# -- streaming: silence, not wall clock, is the timeout


async def test_answers_stream_with_usage_time_to_first_token_and_speed(scripted_llm: ScriptedLLM) -> None:
    scripted_llm.reply("def add(a, b): return a + b", pace=0.01)
    llm = client(scripted_llm)
    answer = await llm.complete(ASK)
    await llm.close()
    assert answer.text == "def add(a, b): return a + b" and answer.finish_reason == "stop"
    assert answer.completion_tokens == 7 and answer.prompt_tokens == 6 and not answer.tokens_estimated
    assert answer.time_to_first_token_ms is not None and 0 < answer.time_to_first_token_ms <= answer.latency_ms
    assert answer.seconds == answer.latency_ms / 1000
    [request] = scripted_llm.requests
    assert request["stream"] is True and request["stream_options"] == {"include_usage": True}


async def test_without_usage_the_tokens_are_counted_and_said_to_be_estimated(scripted_llm: ScriptedLLM) -> None:
    scripted_llm.reply("one two three four", usage=False)
    llm = client(scripted_llm)
    answer = await llm.complete(ASK)
    await llm.close()
    assert answer.tokens_estimated and answer.completion_tokens == 4  # one per streamed chunk
    assert answer.prompt_tokens > 0 and llm.stats.estimated_usage_calls == 1


async def test_an_endpoint_that_refuses_stream_options_is_asked_without_them(scripted_llm: ScriptedLLM) -> None:
    scripted_llm.reject_stream_options = True
    scripted_llm.reply("first answer", times=2)
    llm = client(scripted_llm, max_retries=0)
    assert (await llm.complete(ASK)).text == "first answer"
    answer = await llm.complete(ASK)
    await llm.close()
    assert answer.tokens_estimated and answer.completion_tokens == 2
    assert ["stream_options" in r for r in scripted_llm.requests] == [True, False, False]


async def test_a_bad_request_does_not_turn_usage_reporting_off(scripted_llm: ScriptedLLM) -> None:
    scripted_llm.fail(400, times=2)
    scripted_llm.reply("ok")
    llm = client(scripted_llm, max_retries=2)
    with pytest.raises(LLMUnavailable, match="HTTP 400"):
        await llm.complete(ASK)
    answer = await llm.complete(ASK)
    await llm.close()
    assert not answer.tokens_estimated
    assert ["stream_options" in r for r in scripted_llm.requests] == [True, False, True]  # 400s are not retried


async def test_a_steady_stream_longer_than_the_silence_timeout_is_not_cut(scripted_llm: ScriptedLLM) -> None:
    text = " ".join(f"word{i}" for i in range(15))
    scripted_llm.reply(text, pace=0.2)  # 3 s in all, never 1 s silent
    llm = client(scripted_llm, timeout_seconds=1.0, max_retries=0)
    answer = await llm.complete(ASK)
    await llm.close()
    assert answer.text == text and len(scripted_llm.requests) == 1


async def test_silence_mid_answer_fails_at_once_is_not_retried_and_its_tokens_count(
    scripted_llm: ScriptedLLM,
) -> None:
    scripted_llm.stall_midway("a b c d e f g h", 30.0)
    llm = client(scripted_llm, timeout_seconds=1.0, max_retries=2)
    began = anyio.current_time()
    with pytest.raises(LLMUnavailable, match=r"silent for 1 s after 4 tokens of its answer.*llm_timeout_seconds"):
        await llm.complete(ASK)
    ended = anyio.current_time()
    await llm.close()
    assert ended - began < 30  # it did not wait for the stall to end
    assert len(scripted_llm.requests) == 1  # a retry would have the prompt read again
    assert llm.stats.completion_tokens == 4 and llm.stats.prompt_tokens > 0 and llm.stats.failures == 1


async def test_silence_before_the_first_token_is_not_retried(scripted_llm: ScriptedLLM) -> None:
    scripted_llm.stall(30.0)
    llm = client(scripted_llm, timeout_seconds=0.5, max_retries=2)
    with pytest.raises(LLMUnavailable, match=r"silent for 0\.5 s before its first token"):
        await llm.complete(ASK)
    await llm.close()
    assert len(scripted_llm.requests) == 1


async def test_max_request_seconds_caps_a_model_that_keeps_writing(scripted_llm: ScriptedLLM) -> None:
    scripted_llm.reply(" ".join(["more"] * 100), pace=0.1)  # 10 s, never silent
    llm = client(scripted_llm, timeout_seconds=5.0, max_request_seconds=1.0, max_retries=2)
    with pytest.raises(LLMUnavailable, match=r"did not finish within 1 s \(llm_max_request_seconds\)"):
        await llm.complete(ASK)
    await llm.close()
    assert len(scripted_llm.requests) == 1


async def test_a_server_error_before_the_answer_is_retried_then_silence_is_not(scripted_llm: ScriptedLLM) -> None:
    scripted_llm.fail(503)
    scripted_llm.stall_midway("a b c d", 30.0)
    llm = client(scripted_llm, timeout_seconds=1.0, max_retries=3)
    with pytest.raises(LLMUnavailable, match="silent for 1 s after 2 tokens"):
        await llm.complete(ASK)
    await llm.close()
    assert len(scripted_llm.requests) == 2


async def test_retry_after_is_honoured(scripted_llm: ScriptedLLM) -> None:
    scripted_llm.fail(429, retry_after="1")
    scripted_llm.reply("ok")
    llm = client(scripted_llm, max_retries=1)
    began = anyio.current_time()
    assert (await llm.complete(ASK)).text == "ok"
    await llm.close()
    assert anyio.current_time() - began >= 1.0  # never sooner than the endpoint asked


async def test_a_client_error_is_not_retried(scripted_llm: ScriptedLLM) -> None:
    scripted_llm.fail(401)
    llm = client(scripted_llm, max_retries=2)
    with pytest.raises(LLMUnavailable, match="HTTP 401"):
        await llm.complete(ASK)
    await llm.close()
    assert len(scripted_llm.requests) == 1


# -- concurrency


async def test_a_loopback_endpoint_is_sent_one_request_at_a_time(scripted_llm: ScriptedLLM) -> None:
    scripted_llm.reply("a b c d e", times=3, pace=0.1)
    llm = client(scripted_llm)
    assert llm.stats.concurrency == 1
    async with anyio.create_task_group() as group:
        for _ in range(3):
            group.start_soon(llm.complete, ASK)
    await llm.close()
    assert scripted_llm.in_flight == [1, 1, 1]


def test_the_default_concurrency_follows_where_the_endpoint_is() -> None:
    from generators.llm.flights import default_concurrency

    local = ["http://127.0.0.1:8080/v1", "http://localhost:11434/v1", "http://10.0.0.5/v1", "http://ollama:11434"]
    assert [default_concurrency(url) for url in local] == [1, 1, 1, 1]
    assert [default_concurrency(url) for url in (None, "https://api.openai.com/v1", "http://8.8.8.8/v1")] == [4, 4, 4]


async def test_an_endpoint_that_queues_requests_gets_one_at_a_time(scripted_llm: ScriptedLLM) -> None:
    scripted_llm.one_at_a_time()
    words = " ".join(["tok"] * 10)
    scripted_llm.reply(words, times=6, pace=0.1)
    llm = client(scripted_llm, max_concurrency=3)
    await llm.complete(ASK)  # alone: how soon a first token comes
    scripted_llm.gather(3)
    async with anyio.create_task_group() as group:
        for _ in range(3):  # each waits, silent, for the answers before it
            group.start_soon(llm.complete, ASK)
    assert llm.stats.queueing_detected and llm.stats.concurrency == 1
    async with anyio.create_task_group() as group:
        for _ in range(2):
            group.start_soon(llm.complete, ASK)
    await llm.close()
    assert scripted_llm.in_flight[1:4] == [1, 2, 3] and scripted_llm.in_flight[4:] == [1, 1]


# -- spend caps


def ledgered(llm: ScriptedLLM, tmp_path: Path, **caps: object) -> tuple[LLMClient, SqliteAuditLog]:
    config = LLMConfig.model_validate(
        {"base_url": llm.base_url, "model": "m", "api_key": "k", "max_retries": 0, "caps": caps}
    )
    audit = SqliteAuditLog(tmp_path / "audit.sqlite3")
    return LLMClient(config, ledger=SpendLedger(tmp_path / "spend.sqlite3"), audit=audit), audit


async def test_a_tenant_day_token_cap_refuses_the_next_request_and_is_audited_once(
    scripted_llm: ScriptedLLM, tmp_path: Path
) -> None:
    scripted_llm.reply("print('hello world')", times=3)
    llm, audit = ledgered(scripted_llm, tmp_path, max_tokens_per_tenant_day=5)
    with spend_scope("acme", actor="alice"):
        await llm.complete(ASK)  # 0 spent before: asked; 6 + 2 tokens after
        for _ in range(2):
            with pytest.raises(SpendCapReached) as caught:
                await llm.complete(ASK)
    with spend_scope("globex"):
        await llm.complete(ASK)  # another tenant's day is its own
    await llm.close()
    message = str(caught.value)
    assert "llm_max_tokens_per_tenant_day" in message and "SELF_BUILDING_LLM_MAX_TOKENS_PER_TENANT_DAY" in message
    assert "tenant 'acme'" in message and "8 tokens of 5 tokens" in message, message
    assert len(scripted_llm.requests) == 2 and llm.stats.spend_refusals == 2
    [entry] = audit.query(kind="llm_spend_cap_reached").entries
    assert entry.tenant == "acme" and entry.actor == "alice" and entry.detail["spent"] == 8
    audit.close()


async def test_a_cycle_token_cap_counts_that_cycle_only(scripted_llm: ScriptedLLM, tmp_path: Path) -> None:
    scripted_llm.reply("ok", times=3)
    llm, audit = ledgered(scripted_llm, tmp_path, max_tokens_per_cycle=5)
    with spend_scope("acme", cycle_id="c1"):
        await llm.complete(ASK)
        with pytest.raises(SpendCapReached, match="llm_max_tokens_per_cycle is reached: cycle c1 has spent 7 tokens"):
            await llm.complete(ASK)
    with spend_scope("acme", cycle_id="c2"):
        await llm.complete(ASK)
    with spend_scope("acme"):
        await llm.complete(ASK)  # no cycle: only the day caps apply
    await llm.close()
    assert len(audit.query(kind="llm_spend_cap_reached").entries) == 1
    audit.close()


async def test_money_caps_apply_once_prices_are_set(scripted_llm: ScriptedLLM, tmp_path: Path) -> None:
    scripted_llm.reply("ok", times=2)
    llm, audit = ledgered(
        scripted_llm,
        tmp_path,
        price_per_million_prompt_tokens=100_000.0,  # 0.1 a token
        price_per_million_completion_tokens=1_000_000.0,  # 1 a token
        max_cost_per_tenant_day=1.0,
    )
    await llm.complete(ASK)  # 6 * 0.1 + 1 * 1 = 1.6
    with pytest.raises(SpendCapReached, match=r"llm_max_cost_per_tenant_day is reached: tenant 'default' .* 1\.6000"):
        await llm.complete(ASK)
    await llm.close()
    audit.close()


async def test_the_spend_of_a_failed_answer_counts_and_survives_a_restart(
    scripted_llm: ScriptedLLM, tmp_path: Path
) -> None:
    scripted_llm.stall_midway("a b c d e f", 30.0)
    config = LLMConfig(base_url=scripted_llm.base_url, model="m", timeout_seconds=1.0, max_retries=0)
    ledger = SpendLedger(tmp_path / "spend.sqlite3")
    llm = LLMClient(config, ledger=ledger)
    with spend_scope("acme", cycle_id="c1"), pytest.raises(LLMUnavailable):
        await llm.complete(ASK)
    await llm.close()
    ledger.close()
    reopened = SpendLedger(tmp_path / "spend.sqlite3")
    spent = reopened.tenant_day("acme")
    assert spent.tokens == llm.stats.prompt_tokens + 3 and reopened.cycle("c1").tokens == spent.tokens
    reopened.close()


def test_a_new_utc_day_starts_from_nothing(tmp_path: Path) -> None:
    now = [1_700_000_000.0]
    ledger = SpendLedger(tmp_path / "spend.sqlite3", clock=lambda: now[0])
    ledger.add(SpendScope("acme"), 10, 5, 0.0)
    assert ledger.tenant_day("acme").tokens == 15
    now[0] += 86400
    assert ledger.tenant_day("acme").tokens == 0
    ledger.close()
