"""Run by tests/test_environment.py in a pytest of its own, with server settings in the environment: a test must not
see them. (Not collected with the suite: its name does not start with ``test_``.)"""

from __future__ import annotations

import os

from server.settings import Settings, llm_config


def test_sees_no_server_settings_from_the_shell() -> None:
    assert not [name for name in os.environ if name.startswith(("SELF_BUILDING_LLM", "OPENAI_"))]
    settings = Settings()
    assert settings.llm_model is None and settings.log_level == Settings.model_fields["log_level"].default
    assert llm_config(settings).api_key is None
    assert os.environ["SELF_BUILDING_REQUIRE_BROWSER"] == "probe"  # the harness's own switches stay
