"""The LLM client against a local OpenAI-compatible server: answers, usage, one retry layer, timeouts, breaker."""

from __future__ import annotations

import pytest

from generators.llm import LLMClient, LLMConfig, LLMNotConfigured, LLMUnavailable, Message
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
    from server.settings import Settings, llm_config

    plain = Settings(llm_model="qwen2.5-coder")
    config = llm_config(plain, {"OPENAI_API_KEY": "sk-env", "OPENAI_BASE_URL": "http://127.0.0.1:11434/v1"})
    assert config.configured and config.base_url == "http://127.0.0.1:11434/v1"
    assert config.api_key is not None and config.api_key.get_secret_value() == "sk-env"
    own = Settings(llm_model="m", llm_base_url="http://vllm:8000/v1", llm_api_key="sk-own")
    config = llm_config(own, {"OPENAI_API_KEY": "sk-env", "OPENAI_BASE_URL": "http://elsewhere/v1"})
    assert config.base_url == "http://vllm:8000/v1" and config.api_key is not None
    assert config.api_key.get_secret_value() == "sk-own" and "sk-own" not in repr(config)
    assert not llm_config(Settings(), {}).configured
