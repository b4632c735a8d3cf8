"""Which file a code block is for when the model left out its path line.

Small models often open their answer with a bare fenced block (seen with Qwen2.5-Coder 0.5B and 1.5B in most
failed rounds: the code was there, the path line was not). When the task names the files the model may write, the
block's own content often says which one it is, by two general properties:

- an edit block's SEARCH text is copied from the file it edits, so it occurs in exactly one of the files shown;
- a whole file that defines pytest tests (``def test_...`` functions or ``class Test...``) is a test file, anything
  else is a module; a task that lets the model write one module and one test file leaves no doubt.

A guess is made only where it is unambiguous, and only for a block that is Python (or unlabelled) and not preceded by
a line that tries to be a path (a ``<path>`` echoed from the format is still an error: the model meant to name a
file and did not). ``edits.parse_reply`` refuses a guess that collides with a file the reply also sends whole.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath

__all__ = ["Writable", "guess_path", "is_test_path"]

_TEST_DEFINITION = re.compile(r"^\s*(?:async\s+)?def\s+test\w*\s*\(|^\s*class\s+Test\w*\s*[:(]", re.MULTILINE)
# A fence label that says the block is Python (or says nothing): other languages are never a workspace module.
_PYTHON_LABELS = frozenset(["", "python", "py", "python3"])


@dataclass(frozen=True)
class Writable:
    """The files a reply may write (``paths``) and the current content of those that exist (``files``)."""

    paths: Sequence[str] = ()
    files: Mapping[str, str] = field(default_factory=dict)


def guess_path(writable: Writable, label: str, body: str, search: str | None) -> str | None:
    """The one writable path a path-less block is for, or ``None`` when it cannot be told.

    ``label`` is the fence's info string, ``body`` the block's text, ``search`` its first SEARCH text when it is an
    edit block (``None`` for a whole file).
    """
    if label.strip().lower() not in _PYTHON_LABELS or not writable.paths:
        return None
    if search is not None:
        found = [path for path in writable.paths if search.strip() and search in writable.files.get(path, "")]
    else:
        wants_tests = bool(_TEST_DEFINITION.search(body))
        found = [path for path in writable.paths if is_test_path(path) == wants_tests]
    return found[0] if len(found) == 1 else None


def is_test_path(path: str) -> bool:
    """A pytest file by name: ``test_*.py`` or ``*_test.py``."""
    name = PurePosixPath(path).name
    return name.endswith(".py") and (name.startswith("test_") or name.endswith("_test.py"))
