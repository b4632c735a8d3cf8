"""What the LLM client is configured with and what it answers: config, messages, completions, running stats."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from generators.llm.spend import SpendCaps

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
    max_retries: int = Field(2, ge=0, le=10, description="Retries of a request that got no answer (429, 5xx, connect).")
    temperature: float = Field(0.2, ge=0, le=2, description="Sampling temperature.")
    max_tokens: int = Field(4096, ge=1, description="Most tokens per reply.")
    breaker_failure_threshold: int = Field(3, ge=1, description="Failed calls in a row that open the breaker.")
    breaker_cooldown_seconds: float = Field(60.0, gt=0, description="Seconds an open breaker waits before a probe.")
    caps: SpendCaps = Field(default_factory=SpendCaps, description="Spend caps and prices (need a ledger).")

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
    time_to_first_token_ms: float | None = None
    tokens_estimated: bool = False  # the endpoint reported no usage: prompt size / 4 and one token per chunk

    @property
    def seconds(self) -> float:
        return self.latency_ms / 1000

    @property
    def tokens_per_second(self) -> float | None:
        """Completion tokens per second of writing (after the first token)."""
        if self.time_to_first_token_ms is None or self.latency_ms <= self.time_to_first_token_ms:
            return None
        return round(self.completion_tokens * 1000 / (self.latency_ms - self.time_to_first_token_ms), 2)


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
    concurrency: int = 1  # requests allowed in flight now
    queueing_detected: bool = False  # the endpoint was seen serving one at a time: concurrency lowered to 1
    estimated_usage_calls: int = 0  # answers whose endpoint reported no usage (tokens estimated)
    spend_refusals: int = 0  # requests refused at a spend cap
