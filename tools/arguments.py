"""Arguments a tool refuses, said in the tool's own words.

:func:`explain` turns the SDK's argument validation failure (pydantic's report, which names the internal arguments
model, quotes every rejected value in full and links to pydantic's site) into one line per argument: which one,
what was wrong, what it takes. :func:`non_finite` finds NaN and ±Infinity, which Python's JSON parser accepts but
no tool can use.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from tools.errors import bounded, shown

MAX_LISTED: Final = 5  # arguments explained one by one; the rest are counted
GOT_CHARS: Final = 40
INVALID: Final = "invalid arguments"
# pydantic's messages are plain words, except those naming the model that was expected.
_OWN_WORDS: Final = {
    "model_type": "should be an object",
    "model_attributes_type": "should be an object",
    "dataclass_type": "should be an object",
    "dataclass_exact_type": "should be an object",
    "dict_type": "should be an object",
    "missing": "Field required",
    "extra_forbidden": "Extra inputs are not permitted (not an argument this takes)",
}
_PREFIXES: Final = ("Value error, ", "Assertion failed, ")
_SCALAR = (str, int, float, bool, type(None))
# Segments pydantic adds to a location for the branch of a union that failed ("since.float"): not argument names.
_BRANCH = re.compile(r"^(?:int|float|str|bool|bytes|list|dict|tuple|set|none|[A-Z]\w*)$|[\[\]-]")


def explain(exc: ValidationError) -> str:
    """The failure as ``invalid arguments: a: what was wrong (got 'x'); b.c: ...``, bounded in length."""
    by_path: dict[str, list[ErrorDetails]] = {}
    for error in exc.errors(include_url=False):
        by_path.setdefault(_path(error["loc"]), []).append(error)
    parts = [f"{path}: {_problem(errors)}" for path, errors in list(by_path.items())[:MAX_LISTED]]
    more = len(by_path) - MAX_LISTED
    tail = f"; and {more} more" if more > 0 else ""
    return bounded(f"{INVALID}: {'; '.join(parts)}{tail}. The tool's input schema says what each argument takes.")


def non_finite(arguments: Any) -> str | None:
    """Where the first NaN or ±Infinity in ``arguments`` is (``metrics[3].value``), or ``None`` when there is none."""
    if not _any_non_finite(arguments):  # the usual case, without building a path per value (half an ingest's CPU)
        return None
    pending: list[tuple[str, Any]] = [("", arguments)]
    while pending:
        path, value = pending.pop()
        if isinstance(value, float) and not math.isfinite(value):
            return path or "arguments"
        if isinstance(value, dict):
            pending += [(_join(path, key), item) for key, item in reversed(value.items())]
        elif isinstance(value, list):
            pending += [(f"{path}[{i}]", item) for i, item in reversed(list(enumerate(value)))]
    return None


def _any_non_finite(arguments: Any) -> bool:
    pending = [arguments]
    pop, extend = pending.pop, pending.extend
    while pending:
        value = pop()
        kind = type(value)  # exact types first: what JSON gives; a subclass takes the slower branch below
        if kind is dict:
            extend(value.values())
        elif kind is float:
            if value - value != 0.0:  # NaN or ±Infinity (for a finite number it is 0.0)
                return True
        elif kind is list:
            extend(value)
        elif kind not in (str, int, bool, type(None)):
            if isinstance(value, float) and not math.isfinite(value):
                return True
            if isinstance(value, dict):
                extend(value.values())
            elif isinstance(value, list):
                extend(value)
    return False


def non_finite_message(path: str) -> str:
    return f"{INVALID}: {path}: NaN and Infinity are not numbers; give a finite number"


def _join(path: str, key: object) -> str:
    name = key if isinstance(key, str) and key.isidentifier() and len(key) <= GOT_CHARS else shown(key, GOT_CHARS)
    return f"{path}.{name}" if path else str(name)


def _path(loc: Sequence[int | str]) -> str:
    path = ""
    for index, part in enumerate(loc):
        if isinstance(part, int):
            path += f"[{part}]"
        elif index == 0 or not _BRANCH.search(part):
            path = _join(path, part)
    return path or "arguments"


def _problem(errors: Iterable[ErrorDetails]) -> str:
    """One argument's problem; a union's branches are joined ("should be a valid number or a valid string")."""
    said: list[str] = []
    got = ""
    for error in errors:
        text = _OWN_WORDS.get(error["type"]) or error["msg"]
        for prefix in _PREFIXES:
            text = text.removeprefix(prefix)
        if said and text.startswith("Input should be "):
            text = text.removeprefix("Input should be ")
        if text not in said:
            said.append(text)
        value = error.get("input")
        if error["type"] != "missing" and isinstance(value, _SCALAR) and not got:
            got = f" (got {shown(value, GOT_CHARS)})"
    return " or ".join(said) + got


def unknown_arguments(arguments: Mapping[str, Any], schema: Mapping[str, Any]) -> str | None:
    """Why ``arguments`` hold names the tool does not take (its input schema's properties), or ``None``.

    A name the tool does not know is refused instead of dropped: a call that looks right but changes nothing is
    worse than an error. When an unknown argument is an object whose keys are the tool's own arguments (the shape
    another tool takes, e.g. ``{"thresholds": {...}}``), the message says to pass them at the top level.
    """
    known = list(schema.get("properties", {}))
    unknown = [name for name in arguments if name not in known]
    if not unknown:
        return None
    takes = ", ".join(known) if known else "no arguments"
    message = f"{INVALID}: unknown argument(s) {', '.join(shown(name, 40) for name in unknown[:MAX_LISTED])}"
    nested = next(
        (n for n in unknown if isinstance(arguments[n], dict) and arguments[n] and set(arguments[n]) <= set(known)),
        None,
    )
    hint = f"; pass the fields of {shown(nested, 40)} as arguments themselves" if nested is not None else ""
    return bounded(f"{message}. This tool takes: {takes}{hint}.")


def _holds_arguments(value: Any, known: Sequence[str]) -> bool:
    return isinstance(value, dict) and bool(value) and set(value) <= set(known)
