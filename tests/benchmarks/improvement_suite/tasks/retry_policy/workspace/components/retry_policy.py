"""Retries of flaky calls to other services, with exponential backoff."""

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
RETRIED: tuple[type[Exception], ...] = (ConnectionError, TimeoutError)


def call_with_retry(
    call: Callable[[], T], *, attempts: int = 3, delay: float = 0.02, retry_on: tuple[type[Exception], ...] = RETRIED
) -> T:
    """The result of ``call()``, tried up to ``attempts`` times. After a failure with one of ``retry_on`` it waits
    ``delay`` seconds before the next try, twice as long after the second failure, and so on; the last failure, and
    any other exception at once, is raised."""
    if attempts < 1:
        raise ValueError("attempts must be at least 1")
    for attempt in range(attempts):
        time.sleep(delay * 2**attempt)
        try:
            return call()
        except retry_on:
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable: the last attempt returns or raises")
