"""Hidden check of event_dedupe: first-seen order, and no quadratic comparing (ids are compared a bounded number of
times per id, as a set or dict lookup does)."""

from __future__ import annotations

import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import checklib

module = checklib.component("event_dedupe")
rng = random.Random(11)
ids = [f"e{rng.randrange(500)}" for _ in range(2000)]
expected = list(dict.fromkeys(ids))
checklib.expect_equal(checklib.attempt("dedupe", lambda: module.dedupe(ids)), expected, "dedupe of 2,000 ids")
checklib.expect_equal(checklib.attempt("dedupe([])", lambda: module.dedupe([])), [], "dedupe([])")
checklib.expect_equal(module.dedupe(["a", "a", "a"]), ["a"], "dedupe of one id thrice")

comparisons = 0


class CountedId(str):
    """An id that counts how often it is compared for equality."""

    __hash__ = str.__hash__

    def __eq__(self, other: object) -> bool:
        global comparisons
        comparisons += 1
        return str.__eq__(self, other)


distinct = [CountedId(f"id-{i}") for i in range(3000)]
result = checklib.attempt("dedupe of 3,000 distinct ids", lambda: module.dedupe(distinct))
checklib.expect_equal(result, list(distinct), "dedupe of 3,000 distinct ids")
checklib.expect(
    comparisons <= 3 * len(distinct),
    f"dedupe compared ids {comparisons} times for {len(distinct)} distinct ids (at most {3 * len(distinct)}): "
    "the membership test is still linear",
)
checklib.finish()
