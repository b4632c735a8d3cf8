"""One streamed request: silence measured chunk by chunk, what came back tallied, and failures sorted into those that
may be retried (nothing was answered yet) and those that may not.

The silence deadline is one anyio cancel scope, pushed forward by every chunk: it covers connecting, sending the
prompt, the prompt's processing (the long wait on a CPU) and every gap between chunks, and a model that keeps writing
is never cut by it. (The ``openai`` client's own read timeout is set to the same silence as a backstop; it measures
bytes, so an endpoint's keep-alive comments would fool it, not this.)
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio

if TYPE_CHECKING:
    import openai
    from openai import AsyncOpenAI
    from openai.types.chat import ChatCompletionChunk

RETRY_AFTER_MAX_SECONDS = 60.0
CHARS_PER_TOKEN = 4  # the usual rule of thumb, for an endpoint that reports no usage


@dataclass
class Tally:
    """What one request got back so far (over its retries: only a request that got nothing is retried)."""

    prompt_estimate: int
    started: float = field(default_factory=time.perf_counter)
    parts: list[str] = field(default_factory=list)
    chunks: int = 0
    usage: tuple[int, int] | None = None
    model: str | None = None
    finish_reason: str | None = None
    accepted: bool = False  # the endpoint took the prompt (answered, or went silent while processing it)
    first_token: float | None = None

    def take(self, chunk: ChatCompletionChunk) -> bool:
        """Add ``chunk``; True when it carried text."""
        self.model = chunk.model or self.model
        if chunk.usage is not None:
            self.usage = (chunk.usage.prompt_tokens, chunk.usage.completion_tokens)
        if not chunk.choices:
            return False
        choice = chunk.choices[0]
        self.finish_reason = choice.finish_reason or self.finish_reason
        text = choice.delta.content if choice.delta else None
        if not text:
            return False
        self.parts.append(text)
        self.chunks += 1
        if self.first_token is None:
            self.first_token = time.perf_counter()
        return True

    @property
    def text(self) -> str:
        return "".join(self.parts)

    @property
    def estimated(self) -> bool:
        return self.usage is None

    def tokens(self) -> tuple[int, int]:
        """Prompt and completion tokens: the endpoint's usage, else estimates (prompt size; one token per chunk)."""
        if self.usage is not None:
            return self.usage
        return (self.prompt_estimate if self.accepted else 0), self.chunks


class Retryable(Exception):
    """Failed before anything was answered, in a way worth another try (connection, 429, 5xx)."""

    def __init__(self, error: openai.APIError) -> None:
        super().__init__(str(error))
        self.error = error
        self.retry_after = _retry_after(error)


class Silent(Exception):
    """The endpoint said nothing for the silence timeout."""


class UsageOptionRefused(Exception):
    """The endpoint answered 400 to ``stream_options``: ask again without it."""


def estimate_tokens(texts: list[str]) -> int:
    return sum(len(text) // CHARS_PER_TOKEN + 4 for text in texts)  # + the role and framing of each message


async def stream_once(
    client: AsyncOpenAI, request: dict[str, Any], tally: Tally, silence: float, on_token: Callable[[], None]
) -> None:
    """Send ``request`` streamed and tally its answer.

    Raises:
        Retryable: nothing was answered and another try may work.
        UsageOptionRefused: the endpoint refused ``stream_options``.
        Silent: ``silence`` seconds passed with nothing from the endpoint (never retried: it had the prompt).
        openai.APIError: any other failure.
    """
    import openai

    with anyio.CancelScope(deadline=anyio.current_time() + silence) as quiet:
        try:
            stream = await client.chat.completions.create(**request)
        except openai.BadRequestError as exc:
            if "stream_options" in request:
                raise UsageOptionRefused() from exc
            raise
        except openai.APIError as exc:
            if _before_the_prompt(exc):
                raise Retryable(exc) from exc
            if isinstance(exc, openai.APITimeoutError):
                tally.accepted = True
                raise Silent() from exc
            raise
        tally.accepted = True
        try:
            async for chunk in stream:
                quiet.deadline = anyio.current_time() + silence
                if tally.take(chunk):
                    on_token()
        except openai.APITimeoutError as exc:
            raise Silent() from exc
        finally:
            with anyio.CancelScope(shield=True):
                await stream.close()
    if quiet.cancelled_caught:
        tally.accepted = True
        raise Silent()


def _before_the_prompt(exc: openai.APIError) -> bool:
    """True for a failure that happened before the endpoint took the prompt, or that it answered at once."""
    import httpx2
    import openai

    if isinstance(exc, openai.APITimeoutError):
        return isinstance(exc.__cause__, httpx2.ConnectTimeout | httpx2.PoolTimeout)
    if isinstance(exc, openai.APIConnectionError):
        return True
    return isinstance(exc, openai.APIStatusError) and (exc.status_code == 429 or exc.status_code >= 500)


def _retry_after(exc: openai.APIError) -> float | None:
    """Seconds the endpoint asked us to wait (``retry-after-ms``, ``Retry-After`` seconds or date), bounded."""
    import openai

    if not isinstance(exc, openai.APIStatusError):
        return None
    headers = exc.response.headers
    seconds: float | None = None
    try:
        if "retry-after-ms" in headers:
            seconds = float(headers["retry-after-ms"]) / 1000
        elif "retry-after" in headers:
            value = headers["retry-after"]
            try:
                seconds = float(value)
            except ValueError:
                seconds = email.utils.parsedate_to_datetime(value).timestamp() - time.time()
    except (ValueError, TypeError):
        return None
    return None if seconds is None else min(max(seconds, 0.0), RETRY_AFTER_MAX_SECONDS)
