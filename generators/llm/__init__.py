"""The LLM client: any OpenAI-compatible chat endpoint (OpenAI, vLLM, Ollama, llama.cpp server)."""

from generators.errors import LLMError, LLMNotConfigured, LLMUnavailable, SpendCapReached
from generators.llm.client import LLMClient
from generators.llm.models import Completion, LLMConfig, LLMStats, Message
from generators.llm.spend import SpendCaps, SpendLedger, SpendScope, spend_scope

__all__ = [
    "Completion",
    "LLMClient",
    "LLMConfig",
    "LLMError",
    "LLMNotConfigured",
    "LLMStats",
    "LLMUnavailable",
    "Message",
    "SpendCapReached",
    "SpendCaps",
    "SpendLedger",
    "SpendScope",
    "spend_scope",
]
