"""Hidden check of label_validator: the same verdict as the label rules on every short string of a small alphabet
and on long ones, and no catastrophic backtracking (a 63-character label with a bad last character is judged at
once; the bound, 3 s for four labels, is about a million times what a linear match needs)."""

from __future__ import annotations

import itertools
import signal
import string
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import checklib

module = checklib.component("label_validator")
ALLOWED = set(string.ascii_lowercase + string.digits)


def rules(label: str) -> bool:
    return 1 <= len(label) <= 63 and all(part and set(part) <= ALLOWED for part in label.split("-"))


class TookTooLong(Exception):
    pass


def stop(signum: int, frame: Any) -> None:
    raise TookTooLong


signal.signal(signal.SIGALRM, stop)
signal.setitimer(signal.ITIMER_REAL, 3.0)  # all four together; a linear match of each takes microseconds
try:
    for label in ("a" * 62 + "_", "ab1" * 20 + "-_", "a" * 40 + "--", "a-" * 31 + "_"):
        checklib.expect_equal(module.is_valid_label(label), rules(label), f"is_valid_label({label!r})")
except TookTooLong:
    checklib.expect(False, f"is_valid_label({label!r}) did not answer within 3 s: catastrophic backtracking")
finally:
    signal.setitimer(signal.ITIMER_REAL, 0)

wrong = [
    label
    for length in range(7)
    for label in map("".join, itertools.product("a1-_A", repeat=length))
    if module.is_valid_label(label) != rules(label)
]
checklib.expect(not wrong, f"{len(wrong)} short labels judged against the rules, e.g. {wrong[:5]}")
for label in ("x" * 63, "x" * 64, "a-" * 31 + "b", "a-" * 32 + "b"):
    checklib.expect_equal(module.is_valid_label(label), rules(label), f"is_valid_label of {len(label)} characters")
checklib.expect_equal(module.invalid_labels(["ok", "-no", "fine-2"]), ["-no"], "invalid_labels")
checklib.finish()
