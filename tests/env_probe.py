"""Run by tests/test_environment.py in a pytest of its own, with server settings in the environment: a test must not
see them. (Not collected with the suite: its name does not start with ``test_``.)"""

from __future__ import annotations

import os

import pytest

from server.settings import Settings
from server.settings_load import llm_config


@pytest.fixture(scope="module")
def module_environ() -> dict[str, str]:
    """The environment a module-scoped fixture sees (a server built once per module)."""
    return dict(os.environ)


def test_sees_no_server_settings_from_the_shell(module_environ: dict[str, str]) -> None:
    for environ in (module_environ, os.environ):
        assert not [name for name in environ if name.startswith(("SELF_BUILDING_LLM", "OPENAI_"))]
    settings = Settings()
    assert settings.llm_model is None and settings.log_level == Settings.model_fields["log_level"].default
    assert llm_config(settings).api_key is None
    assert os.environ["SELF_BUILDING_REQUIRE_BROWSER"] == "probe"  # the harness's own switches stay
