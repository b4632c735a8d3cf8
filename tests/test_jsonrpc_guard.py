"""The depth-safe decoding behind the JSON-RPC guard (also for other request bodies, e.g. the dashboard's): nesting is
measured without recursion, exactly for any JSON text, and a too-deep document is refused before anything recurses."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from server.jsonrpc_guard import MAX_DEPTH, JsonTooDeepError, check_message, loads_bounded, nesting_depth, peek_id

# Strings full of what could confuse a scan: quotes, backslashes, brackets, escapes of all of them.
TRICKY = st.text(alphabet=st.sampled_from(list('"\\[]{}/ab\n\t\u00e9\u2028')), max_size=12)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | TRICKY,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TRICKY, inner, max_size=4),
    max_leaves=40,
)


def reference_depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max((reference_depth(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((reference_depth(v) for v in value.values()), default=0)
    return 0


@given(JSON_VALUES, st.booleans())
def test_nesting_depth_is_exact_for_any_json_text(value: Any, ascii_only: bool) -> None:
    text = json.dumps(value, ensure_ascii=ascii_only).encode()
    assert nesting_depth(text) == reference_depth(value)
    assert loads_bounded(text, max_depth=reference_depth(value)) == value


def test_deep_documents_are_refused_without_recursing() -> None:
    just_over = "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1)
    for text in ["[" * 1_000_000, '{"a":' * 300_000 + "1" + "}" * 300_000, just_over]:
        with pytest.raises(JsonTooDeepError):
            loads_bounded(text)
    assert loads_bounded("[" * MAX_DEPTH + "]" * MAX_DEPTH) is not None
    with pytest.raises(ValueError):
        loads_bounded(b"\xff[]")  # not UTF-8


def test_the_id_of_a_too_deep_message_is_read_where_it_stands() -> None:
    deep = "[" * 100 + "]" * 100
    assert peek_id(f'{{"jsonrpc":"2.0","params":{{"id":"inner","x":{deep}}},"id":"outer"}}'.encode()) == "outer"
    assert peek_id(f'{{"method":"id","x":{deep},"id":12}}'.encode()) == 12
    assert peek_id(f'{{"x":{deep},"id":1.5}}'.encode()) is None  # not an id
    assert peek_id(f'[{{"id":1,"x":{deep}}}]'.encode()) is None  # a batch: no single id
    refused = check_message(f'{{"jsonrpc":"2.0","method":"ping","params":{{"x":{deep}}},"id":"d"}}'.encode())
    assert not isinstance(refused, dict) and getattr(refused, "id", None) == "d"
