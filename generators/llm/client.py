"""``LLMClient``: ``AsyncOpenAI``, streamed, behind a concurrency limit, spend caps and a circuit breaker.

Answers stream (see :mod:`generators.llm.streaming`): ``timeout_seconds`` is the most silence, before the first
token and between tokens, and ``max_request_seconds`` caps a request in all. Retries live in one place, here
(the ``openai`` client's own are off: it would retry a timeout from scratch): only a request that got no answer
is tried again — a connection error, 429 or 5xx, after the ``Retry-After`` the endpoint asked for or a short
back-off — so a failing endpoint sees ``max_retries + 1`` requests per call. A request that went silent once the
endpoint had the prompt is never sent again: on a CPU that would process the whole prompt again. Consecutive failed
calls open the breaker: further calls fail at once until ``breaker_cooldown_seconds`` have passed, then one probe
is let through.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt

from generators.errors import LLMError, LLMNotConfigured, LLMUnavailable
from generators.llm.flights import Flight, Flights, default_concurrency
from generators.llm.models import Completion, LLMConfig, LLMStats, Message
from generators.llm.spend import Ledger, SpendMeter, SpendScope, current_scope
from generators.llm.streaming import Retryable, Silent, Tally, UsageOptionRefused, estimate_tokens, stream_once

if TYPE_CHECKING:  # openai takes about half a second to import: only a configured client loads it
    import openai
    from openai import AsyncOpenAI
    from openai.types.chat import ChatCompletionMessageParam

    from generators.deploy.audit import AuditLog

logger = logging.getLogger(__name__)
CONNECT_SECONDS = 10.0


class LLMClient:
    """Asks the configured model; one instance per server, built by the lifespan.

    With a ``ledger``, every request is charged to the :func:`~generators.llm.spend.spend_scope` it runs in and
    refused once one of ``config.caps`` is reached (``audit`` gets one entry per cap hit).
    """

    def __init__(
        self,
        config: LLMConfig,
        *,
        clock: Callable[[], float] = time.monotonic,
        ledger: Ledger | None = None,
        audit: AuditLog | None = None,
    ) -> None:
        self.config = config
        self._clock = clock
        self._failures_in_row = 0
        self._opened_at: float | None = None
        self._client: AsyncOpenAI | None = None
        self._usage_option = True  # ask for usage in the stream until the endpoint refuses stream_options
        self._meter = SpendMeter(config.caps, ledger, audit) if ledger is not None else None
        self._flights = Flights(config.max_concurrency or default_concurrency(config.base_url))
        self.stats = LLMStats(concurrency=self._flights.limit)
        if config.configured:
            import httpx2
            from openai import AsyncOpenAI

            key = config.api_key.get_secret_value() if config.api_key else "not-needed"
            silence = config.timeout_seconds
            timeout = httpx2.Timeout(silence, connect=min(silence, CONNECT_SECONDS))
            self._client = AsyncOpenAI(api_key=key, base_url=config.base_url, timeout=timeout, max_retries=0)

    @property
    def configured(self) -> bool:
        return self._client is not None

    async def complete(
        self, messages: list[Message], *, temperature: float | None = None, max_tokens: int | None = None
    ) -> Completion:
        """The model's answer to ``messages``.

        Raises:
            LLMNotConfigured, LLMUnavailable (failed, went silent, took too long, breaker open), SpendCapReached,
            LLMError (an empty answer).
        """
        if self._client is None:
            raise LLMNotConfigured()
        scope = current_scope()
        if self._meter is not None:
            try:
                await anyio.to_thread.run_sync(self._meter.check, scope)
            except LLMError:
                self.stats.spend_refusals += 1
                raise
        self._check_breaker()
        self.stats.calls += 1
        request: dict[str, Any] = {
            "model": str(self.config.model),
            "messages": [_param(m) for m in messages],
            "temperature": self.config.temperature if temperature is None else temperature,
            "max_tokens": max_tokens or self.config.max_tokens,
            "stream": True,
        }
        tally = Tally(estimate_tokens([m.content for m in messages]))
        try:
            async with self._flights.slot() as flight:
                tally.started = time.perf_counter()
                await self._ask(request, tally, flight)
        except LLMError as exc:
            self._failed(str(exc))
            await self._charge(scope, tally)
            raise
        except BaseException:  # cancelled (the server stops): what the endpoint already did still counts
            with anyio.CancelScope(shield=True):
                await self._charge(scope, tally)
            raise
        finally:
            self._note_flights()
        latency = (time.perf_counter() - tally.started) * 1000
        self._succeeded(latency)
        await self._charge(scope, tally)
        if not tally.parts and tally.finish_reason is None:
            raise LLMError(f"the LLM at {self._where()} answered with no choices")
        prompt_tokens, completion_tokens = tally.tokens()
        ttft = None if tally.first_token is None else (tally.first_token - tally.started) * 1000
        return Completion(
            text=tally.text,
            model=tally.model or str(self.config.model),
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            latency_ms=latency,
            finish_reason=tally.finish_reason,
            time_to_first_token_ms=ttft,
            tokens_estimated=tally.estimated,
        )

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()

    async def _ask(self, request: dict[str, Any], tally: Tally, flight: Flight) -> None:
        """One request, its retries included, within ``max_request_seconds``; failures as LLMUnavailable."""
        import openai

        assert self._client is not None
        limit = self.config.max_request_seconds
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.config.max_retries + 1),
            retry=retry_if_exception_type(Retryable),
            wait=_wait,
            sleep=anyio.sleep,
            reraise=True,
        )
        with anyio.CancelScope(deadline=anyio.current_time() + limit) as whole:
            try:
                async for attempt in retrying:
                    with attempt:
                        await self._attempt(request, tally, flight)
            except Retryable as exc:
                raise LLMUnavailable(f"the LLM at {self._where()} failed: {_describe(exc.error)}") from exc.error
            except Silent:
                raise LLMUnavailable(self._silent(tally)) from None
            except openai.APIError as exc:
                raise LLMUnavailable(f"the LLM at {self._where()} failed: {_describe(exc)}") from exc
        if whole.cancelled_caught:
            raise LLMUnavailable(
                f"the LLM at {self._where()} did not finish within {limit:g} s (llm_max_request_seconds), "
                f"{tally.chunks} tokens into its answer; not asked again: raise llm_max_request_seconds "
                "(SELF_BUILDING_LLM_MAX_REQUEST_SECONDS), or ask for less"
            )

    async def _attempt(self, request: dict[str, Any], tally: Tally, flight: Flight) -> None:
        assert self._client is not None
        asked = {**request, "stream_options": {"include_usage": True}} if self._usage_option else request
        try:
            await stream_once(self._client, asked, tally, self.config.timeout_seconds, lambda: self._token(flight))
        except UsageOptionRefused:  # a 400: stream_options, or the request itself? Asking without them tells.
            await stream_once(self._client, request, tally, self.config.timeout_seconds, lambda: self._token(flight))
            self._usage_option = False
            logger.warning("the LLM endpoint refuses stream_options: token counts are estimated from now on")

    def _token(self, flight: Flight) -> None:
        self._flights.first_token(flight)

    def _silent(self, tally: Tally) -> str:
        silence = self.config.timeout_seconds
        where = "before its first token (while it read the prompt)" if not tally.chunks else (
            f"after {tally.chunks} tokens of its answer"
        )  # fmt: skip
        return (
            f"the LLM at {self._where()} timed out: silent for {silence:g} s {where}; not asked again (a retry would "
            "read the whole prompt again): raise llm_timeout_seconds (SELF_BUILDING_LLM_TIMEOUT_SECONDS) for a slow "
            "model, or give it a smaller prompt"
        )

    async def _charge(self, scope: SpendScope, tally: Tally) -> None:
        prompt_tokens, completion_tokens = tally.tokens()
        self.stats.prompt_tokens += prompt_tokens
        self.stats.completion_tokens += completion_tokens
        if tally.estimated and tally.accepted:
            self.stats.estimated_usage_calls += 1
        if self._meter is not None:
            await anyio.to_thread.run_sync(self._meter.record, scope, prompt_tokens, completion_tokens)

    def _note_flights(self) -> None:
        self.stats.concurrency = self._flights.limit
        self.stats.queueing_detected = self._flights.queueing_detected

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

    def _failed(self, error: str) -> None:
        self.stats.failures += 1
        self.stats.last_error = error[:300]
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


def _wait(state: RetryCallState) -> float:
    """What the endpoint asked for (``Retry-After``), else 0.5 s doubling up to 8 s."""
    error = state.outcome.exception() if state.outcome else None
    if isinstance(error, Retryable) and error.retry_after is not None:
        return error.retry_after
    return float(min(8.0, 0.5 * 2 ** (state.attempt_number - 1)))


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
        return "timed out connecting"
    if isinstance(exc, openai.APIConnectionError):
        return "could not connect"
    if isinstance(exc, openai.APIStatusError):
        return f"HTTP {exc.status_code}: {exc.message[:200]}"
    return f"{type(exc).__name__}: {str(exc)[:200]}"
