"""``LLMClient``: ``AsyncOpenAI`` behind a circuit breaker, with token usage and latency recorded.

Retries live in one place: the ``openai`` client's own (``max_retries``; it honours ``Retry-After`` and backs off
on 429, 408, 409 and 5xx). Nothing here retries again on top, so a failing endpoint sees ``max_retries + 1``
requests per call, never the square of it. Consecutive failed calls open the breaker: further calls fail at once
until ``breaker_cooldown_seconds`` have passed, then one probe is let through.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from generators.llm.errors import LLMError, LLMNotConfigured, LLMUnavailable

if TYPE_CHECKING:  # openai takes about half a second to import: only a configured client loads it
    import openai
    from openai import AsyncOpenAI
    from openai.types.chat import ChatCompletionMessageParam

logger = logging.getLogger(__name__)
Role = Literal["system", "user", "assistant"]


class LLMConfig(BaseModel):
    """Where the model is and how to talk to it. ``model`` unset means no LLM is configured."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    base_url: str | None = Field(None, description="OpenAI-compatible base URL, e.g. http://127.0.0.1:8000/v1.")
    model: str | None = Field(None, description="Model name the endpoint serves.")
    api_key: SecretStr | None = Field(None, description="API key (local servers accept any non-empty value).")
    timeout_seconds: float = Field(
        120.0, gt=0, description="Most seconds of silence: before the first token and between tokens (streaming)."
    )
    max_request_seconds: float = Field(1800.0, gt=0, description="Most seconds one request may take in all.")
    max_concurrency: int | None = Field(
        None, ge=1, description="Requests in flight at once; None: 1 for a loopback endpoint, 4 otherwise."
    )
    max_retries: int = Field(2, ge=0, le=10, description="Retries of the openai client (the only retry layer).")
    temperature: float = Field(0.2, ge=0, le=2, description="Sampling temperature.")
    max_tokens: int = Field(4096, ge=1, description="Most tokens per reply.")
    breaker_failure_threshold: int = Field(3, ge=1, description="Failed calls in a row that open the breaker.")
    breaker_cooldown_seconds: float = Field(60.0, gt=0, description="Seconds an open breaker waits before a probe.")

    @property
    def configured(self) -> bool:
        return bool(self.model)


@dataclass(frozen=True, slots=True)
class Message:
    role: Role
    content: str


@dataclass(frozen=True, slots=True)
class Completion:
    """One answer: its text, what it cost, and how long it took (retries included)."""

    text: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    latency_ms: float
    finish_reason: str | None


@dataclass
class LLMStats:
    """Running totals since start-up (reported by the server; nothing secret in here)."""

    calls: int = 0
    failures: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_ms_total: float = 0.0
    last_error: str | None = None
    breaker_state: Literal["closed", "open", "half_open"] = "closed"
    recent_latencies_ms: list[float] = field(default_factory=list)


class LLMClient:
    """Asks the configured model; one instance per server, built by the lifespan."""

    def __init__(self, config: LLMConfig, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.stats = LLMStats()
        self._clock = clock
        self._failures_in_row = 0
        self._opened_at: float | None = None
        self._client: AsyncOpenAI | None = None
        if config.configured:
            from openai import AsyncOpenAI

            key = config.api_key.get_secret_value() if config.api_key else "not-needed"
            self._client = AsyncOpenAI(
                api_key=key, base_url=config.base_url, timeout=config.timeout_seconds, max_retries=config.max_retries
            )

    @property
    def configured(self) -> bool:
        return self._client is not None

    async def complete(
        self, messages: list[Message], *, temperature: float | None = None, max_tokens: int | None = None
    ) -> Completion:
        """The model's answer to ``messages``. Raises LLMNotConfigured, LLMUnavailable or LLMError."""
        if self._client is None:
            raise LLMNotConfigured()
        self._check_breaker()
        started = time.perf_counter()
        self.stats.calls += 1
        try:
            reply = await self._client.chat.completions.create(
                model=str(self.config.model),
                messages=[_param(m) for m in messages],
                temperature=self.config.temperature if temperature is None else temperature,
                max_tokens=max_tokens or self.config.max_tokens,
            )
        except Exception as exc:
            import openai

            if not isinstance(exc, openai.APIError):
                raise
            self._failed(exc)
            raise LLMUnavailable(f"the LLM at {self._where()} failed: {_describe(exc)}") from exc
        latency = (time.perf_counter() - started) * 1000
        self._succeeded(latency)
        if not reply.choices:
            raise LLMError(f"the LLM at {self._where()} answered with no choices")
        choice = reply.choices[0]
        usage = reply.usage
        prompt_tokens = usage.prompt_tokens if usage else 0
        completion_tokens = usage.completion_tokens if usage else 0
        self.stats.prompt_tokens += prompt_tokens
        self.stats.completion_tokens += completion_tokens
        return Completion(
            text=choice.message.content or "",
            model=reply.model,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            latency_ms=latency,
            finish_reason=choice.finish_reason,
        )

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()

    def _where(self) -> str:
        return self.config.base_url or "api.openai.com"

    def _check_breaker(self) -> None:
        if self._opened_at is None:
            return
        waited = self._clock() - self._opened_at
        if waited < self.config.breaker_cooldown_seconds:
            raise LLMUnavailable(
                f"the LLM at {self._where()} failed {self._failures_in_row} times in a row; not asking it again for "
                f"{self.config.breaker_cooldown_seconds - waited:.0f} s (last error: {self.stats.last_error})"
            )
        self.stats.breaker_state = "half_open"  # this call is the probe

    def _failed(self, exc: openai.APIError) -> None:
        self.stats.failures += 1
        self.stats.last_error = _describe(exc)
        self._failures_in_row += 1
        if self._failures_in_row >= self.config.breaker_failure_threshold or self.stats.breaker_state == "half_open":
            self._opened_at = self._clock()
            self.stats.breaker_state = "open"
            logger.warning("LLM circuit breaker open after %d failures in a row", self._failures_in_row)

    def _succeeded(self, latency_ms: float) -> None:
        self._failures_in_row = 0
        self._opened_at = None
        self.stats.breaker_state = "closed"
        self.stats.latency_ms_total += latency_ms
        recent = self.stats.recent_latencies_ms
        recent.append(round(latency_ms, 1))
        del recent[:-100]


def _param(message: Message) -> ChatCompletionMessageParam:
    from openai.types.chat import (
        ChatCompletionAssistantMessageParam,
        ChatCompletionSystemMessageParam,
        ChatCompletionUserMessageParam,
    )

    if message.role == "system":
        return ChatCompletionSystemMessageParam(role="system", content=message.content)
    if message.role == "assistant":
        return ChatCompletionAssistantMessageParam(role="assistant", content=message.content)
    return ChatCompletionUserMessageParam(role="user", content=message.content)


def _describe(exc: openai.APIError) -> str:
    import openai

    if isinstance(exc, openai.APITimeoutError):
        return "timed out"
    if isinstance(exc, openai.APIConnectionError):
        return "could not connect"
    if isinstance(exc, openai.APIStatusError):
        return f"HTTP {exc.status_code}: {exc.message[:200]}"
    return type(exc).__name__
