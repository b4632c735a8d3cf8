"""What can go wrong talking to the model, worded for the agent that asked for code."""

from __future__ import annotations

from generators.errors import GeneratorError

SETTINGS_HINT = (
    "set SELF_BUILDING_LLM_BASE_URL (e.g. http://127.0.0.1:11434/v1 for Ollama, omit for OpenAI), "
    "SELF_BUILDING_LLM_MODEL and SELF_BUILDING_LLM_API_KEY (or OPENAI_API_KEY / OPENAI_BASE_URL)"
)


class LLMError(GeneratorError):
    """The model could not be asked, or did not answer usefully."""


class LLMNotConfigured(LLMError):
    """No model is configured: the generation tools cannot work, everything else does."""

    def __init__(self) -> None:
        super().__init__(f"code generation needs an LLM and none is configured: {SETTINGS_HINT}")


class LLMUnavailable(LLMError):
    """The endpoint failed (after the client's retries), or its circuit breaker is open."""
