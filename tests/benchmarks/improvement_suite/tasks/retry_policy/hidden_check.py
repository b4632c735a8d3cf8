"""Hidden check of retry_policy: no wait before the first attempt, waits of delay, 2 x delay, ... after each retried
failure, the last failure raised, other errors raised at once (time.sleep is replaced, so nothing waits)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import checklib

waits: list[float] = []
time.sleep = waits.append  # before the import: a `from time import sleep` gets it too
module = checklib.component("retry_policy")


def failing(times: int, error: Exception) -> tuple[list[int], object]:
    calls: list[int] = []

    def call() -> str:
        calls.append(1)
        if len(calls) <= times:
            raise error
        return "ok"

    return calls, call


calls, call = failing(0, ConnectionError())
checklib.expect_equal(checklib.attempt("a call that answers", lambda: module.call_with_retry(call, delay=0.5)), "ok",
                      "a call that answers")  # fmt: skip
checklib.expect_equal(waits, [], "waits before a call that answers at once")
waits.clear()
calls, call = failing(2, TimeoutError())
checklib.expect_equal(checklib.attempt("two failures", lambda: module.call_with_retry(call, delay=0.5)), "ok",
                      "a call that fails twice")  # fmt: skip
checklib.expect_equal(waits, [0.5, 1.0], "waits around two failures (delay 0.5)")
waits.clear()
calls, call = failing(9, ConnectionError())
try:
    module.call_with_retry(call, attempts=4, delay=0.1)
    checklib.expect(False, "a call that always fails did not raise")
except ConnectionError:
    pass
checklib.expect_equal(len(calls), 4, "attempts of a call that always fails")
checklib.expect_equal(waits, [0.1, 0.2, 0.4], "waits between 4 failing attempts (delay 0.1)")
waits.clear()
calls, call = failing(1, KeyError("x"))
try:
    module.call_with_retry(call, delay=0.5)
    checklib.expect(False, "a KeyError was not raised")
except KeyError:
    pass
checklib.expect_equal((len(calls), waits), (1, []), "calls and waits for an error that is not retried")
checklib.finish()
