"""Retries with exponential backoff and jitter, for throttling and transient AWS errors only (tenacity)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential, wait_random

from telemetry.errors import failure_text

logger = logging.getLogger(__name__)

T = TypeVar("T")
# botocore's own throttling and transient codes (botocore.retries.standard), plus the 5xx codes seen from CloudWatch.
RETRYABLE_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottledException",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "TransactionInProgressException",
        "RequestLimitExceeded",
        "BandwidthLimitExceeded",
        "LimitExceededException",
        "RequestThrottled",
        "SlowDown",
        "PriorRequestNotComplete",
        "EC2ThrottledException",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "InternalFailure",
        "InternalServiceError",
        "InternalError",
        "RequestTimeout",
        "RequestTimeoutException",
    }
)
TOO_MANY_REQUESTS = 429


def describe_error(exc: BaseException) -> str:
    """``Code: message`` of an AWS error; ``Type: text`` of botocore's own (network, endpoint: no credentials appear
    in either); anything else (a bug, a store's error with its paths) reads "internal error (id …)", logged by id."""
    response: Any = getattr(exc, "response", None)
    if isinstance(response, dict) and "Error" in response:
        error = response["Error"]
        return f"{error.get('Code', type(exc).__name__)}: {error.get('Message', '')}".strip()
    if type(exc).__module__.startswith(("botocore", "urllib3")):
        return f"{type(exc).__name__}: {exc}"
    return failure_text(exc, logger, "a CloudWatch call")


def is_transient(exc: BaseException) -> bool:
    """Throttling, 5xx and network trouble: worth another try. Anything else (auth, validation) is not."""
    # botocore is imported here, not at module level: it is slow to import and only needed once AWS is in use.
    from botocore.exceptions import (
        ClientError,
        ConnectionClosedError,
        ConnectTimeoutError,
        EndpointConnectionError,
        ReadTimeoutError,
    )

    if isinstance(exc, EndpointConnectionError | ConnectionClosedError | ReadTimeoutError | ConnectTimeoutError):
        return True
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        return error.get("Code", "") in RETRYABLE_CODES or status == TOO_MANY_REQUESTS or status >= 500
    return False


def call_with_retry(fn: Callable[[], T], *, attempts: int = 4, initial: float = 0.5, maximum: float = 8.0) -> T:
    """Run ``fn`` (blocking), retrying transient errors with exponential backoff and jitter; re-raise the last."""
    for attempt in Retrying(
        retry=retry_if_exception(is_transient),
        stop=stop_after_attempt(attempts),
        # The same as wait_exponential_jitter(multiplier=...), whose ``multiplier`` only recent tenacity has.
        wait=wait_exponential(multiplier=initial, max=maximum) + wait_random(0, initial),
        reraise=True,
    ):
        with attempt:
            return fn()
    raise AssertionError("unreachable: tenacity either returns or re-raises")
