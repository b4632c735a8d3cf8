"""The LLM client: any OpenAI-compatible chat endpoint (OpenAI, vLLM, Ollama, llama.cpp server)."""

from generators.llm.client import Completion, LLMClient, LLMConfig, LLMStats, Message
from generators.llm.errors import LLMError, LLMNotConfigured, LLMUnavailable

__all__ = [
    "Completion",
    "LLMClient",
    "LLMConfig",
    "LLMError",
    "LLMNotConfigured",
    "LLMStats",
    "LLMUnavailable",
    "Message",
]
