"""One truth about configuring the model: every message that says no LLM is configured says the same thing."""

from __future__ import annotations

import pytest

from generators.errors import SETTINGS_HINT
from generators.llm import LLMClient, LLMConfig
from server.builders import cycles_ready
from server.settings import Settings
from tests.conftest import ServerFactory, call_error, connect

pytestmark = pytest.mark.anyio


async def test_every_no_llm_message_gives_the_same_settings(make_server: ServerFactory) -> None:
    server = make_server(llm_model=None, llm_base_url=None)
    async with connect(server) as client:
        generate = await call_error(
            client, "generate_component", {"component_type": "utility", "requirements": "parse durations like 15m"}
        )
        improve = await call_error(client, "trigger_improvement_cycle", {"tenant_id": "acme"})
    assert SETTINGS_HINT in generate, generate
    assert SETTINGS_HINT in improve, improve
    assert "SELF_BUILDING_LLM_MODEL (required)" in SETTINGS_HINT
    assert "leave it unset for OpenAI" in SETTINGS_HINT


async def test_background_cycles_say_it_the_same_way(settings: Settings) -> None:
    """Autonomous and emergency cycles log why they did not start: the same words."""
    llm = LLMClient(LLMConfig())
    try:
        why = cycles_ready(settings, llm)
    finally:
        await llm.close()
    assert why is not None and SETTINGS_HINT in why
