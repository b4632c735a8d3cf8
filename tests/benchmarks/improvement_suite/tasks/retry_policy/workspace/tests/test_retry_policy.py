"""Tests of call_with_retry (no waiting: delay 0)."""

import pytest
from components.retry_policy import call_with_retry


class Flaky:
    """Fails with ``error`` the first ``failures`` times, then answers 42."""

    def __init__(self, failures: int, error: Exception) -> None:
        """A call that fails ``failures`` times."""
        self.failures = failures
        self.error = error
        self.calls = 0

    def __call__(self) -> int:
        """Fail, or answer."""
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return 42


def test_answer_after_failures() -> None:
    """Connection errors are retried until the call answers."""
    flaky = Flaky(2, ConnectionError("reset"))
    assert call_with_retry(flaky, delay=0.0) == 42
    assert flaky.calls == 3


def test_last_failure_is_raised() -> None:
    """After the last attempt the failure is raised."""
    flaky = Flaky(5, TimeoutError("slow"))
    with pytest.raises(TimeoutError):
        call_with_retry(flaky, attempts=2, delay=0.0)
    assert flaky.calls == 2


def test_other_errors_are_not_retried() -> None:
    """An error not in retry_on is raised at once; attempts must be at least one."""
    flaky = Flaky(1, KeyError("x"))
    with pytest.raises(KeyError):
        call_with_retry(flaky, delay=0.0)
    assert flaky.calls == 1
    with pytest.raises(ValueError):
        call_with_retry(flaky, attempts=0)
