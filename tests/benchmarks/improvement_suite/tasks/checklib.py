"""What the hidden acceptance checks share. A check runs as ``python hidden_check.py WORKSPACE`` in a fresh
interpreter after the loop, on the final workspace; the model never sees it. It exits 0 when the component behaves
and the defect is gone, 1 otherwise, and writes one line per failed expectation to stdout.

Where it can, a check bounds work counted in operations (calls, opened files, traced lines, allocated bytes), not
in seconds, so a busy machine cannot fail a fixed component nor pass a defective one.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from pathlib import Path
from types import FrameType, ModuleType
from typing import Any

_failures: list[str] = []
FAILED = object()  # what attempt() returns when the call raised (already recorded)


def component(name: str) -> ModuleType:
    """``components.<name>`` of the workspace named on the command line."""
    root = Path(sys.argv[1]).resolve()
    sys.path.insert(0, str(root))
    return importlib.import_module(f"components.{name}")


def expect(condition: bool, message: str) -> None:
    """Record ``message`` as a failure unless ``condition`` holds."""
    if not condition:
        _failures.append(message)


def expect_equal(actual: object, expected: object, what: str) -> None:
    """Record a failure unless ``actual == expected`` (nothing more when ``actual`` is :data:`FAILED`)."""
    if actual is FAILED:
        return
    expect(actual == expected, f"{what}: expected {expected!r}, got {actual!r}")


def attempt(what: str, call: Callable[[], Any]) -> Any:
    """The result of ``call()``; an exception is recorded as a failure (and :data:`FAILED` returned)."""
    try:
        return call()
    except Exception as exc:
        _failures.append(f"{what} raised {type(exc).__name__}: {exc}")
        return FAILED


def lines_run(module: ModuleType, call: Callable[[], Any]) -> int:
    """How many lines of ``module``'s source file run during ``call()`` (sys.settrace line events)."""
    source = module.__file__
    count = 0

    def local(frame: FrameType, event: str, arg: object) -> Any:
        nonlocal count
        if event == "line":
            count += 1
        return local

    def tracer(frame: FrameType, event: str, arg: object) -> Any:
        return local if frame.f_code.co_filename == source else None

    sys.settrace(tracer)
    try:
        call()
    finally:
        sys.settrace(None)
    return count


def finish() -> None:
    """Exit: 0 when every expectation held, else 1 after writing the failures."""
    if _failures:
        sys.stdout.write("".join(f"FAIL {line}\n" for line in _failures))
        sys.exit(1)
    sys.stdout.write("PASS\n")
    sys.exit(0)
