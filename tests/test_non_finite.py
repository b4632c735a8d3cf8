"""NaN and ±Infinity anywhere in a tool's arguments are found, and where (Python's JSON parser accepts them; no tool
can use them); the quick scan that clears the usual arguments agrees with JSON's own refusal of them."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from tools.arguments import non_finite

scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=5), st.floats())
documents = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=5), inner, max_size=5)),
    max_leaves=40,
)


@given(documents)
def test_a_non_finite_number_is_found_wherever_it_is(arguments: Any) -> None:
    try:
        json.dumps(arguments, allow_nan=False)
        has_one = False
    except ValueError:
        has_one = True
    where = non_finite(arguments)
    assert (where is not None) == has_one, where


def test_the_place_is_named() -> None:
    arguments = {"metrics": [{"value": 1.0}, {"value": 2.0}, {"value": 3.0}, {"value": float("-inf")}], "n": 1}
    assert non_finite(arguments) == "metrics[3].value"
    assert non_finite({"metrics": [{"value": 1.0}] * 1000}) is None
