"""What can go wrong talking to the model, worded for the agent that asked for code."""

from __future__ import annotations

from generators.errors import GeneratorError

# The one description of how to configure the model, for every message that says none is configured.
SETTINGS_HINT = (
    "set SELF_BUILDING_LLM_MODEL (required); SELF_BUILDING_LLM_BASE_URL for any OpenAI-compatible endpoint (e.g. "
    "http://127.0.0.1:8080/v1; leave it unset for OpenAI itself, or set OPENAI_BASE_URL); and "
    "SELF_BUILDING_LLM_API_KEY or OPENAI_API_KEY (local servers accept any value)"
)
NOT_CONFIGURED = f"code generation needs an LLM and none is configured: {SETTINGS_HINT}"


class LLMError(GeneratorError):
    """The model could not be asked, or did not answer usefully."""


class LLMNotConfigured(LLMError):
    """No model is configured: the generation tools cannot work, everything else does."""

    def __init__(self) -> None:
        super().__init__(NOT_CONFIGURED)


class LLMUnavailable(LLMError):
    """The endpoint failed (after the client's retries), or its circuit breaker is open."""


class SpendCapReached(LLMError):
    """A spend cap (tokens or money, per cycle or per tenant per UTC day) is reached: nothing more is asked."""
