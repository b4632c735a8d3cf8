"""What a reply's change must be before it is validated at all, whatever the model answers.

* Only the files the task names: a new component's module and its test file; for an improvement, the files shown
  and their test files. Anything else (the reply format's example, a stray module, tests in the wrong place) refuses
  the whole reply, with the allowed paths named.
* A change: a reply that leaves every file as it was shown, or an improvement that leaves the code of the modules it
  was asked to improve as it was, is "no change". Code is compared as its syntax tree without docstrings
  (``ast.dump``), so whitespace, comments, docstrings, quoting and line wrapping do not count; any other edit does
  (a renamed variable, a changed annotation). A file that does not parse is compared byte for byte.
* Tests live at ``tests/[<sub-folders>/]test_<stem>.py``, mirroring the module's folders below its component root
  (``components/acme/cache.py`` → ``tests/acme/test_cache.py``), so one tenant's tests never collide with
  another's; a module outside the component roots has its tests at ``tests/test_<stem>.py``.
"""

from __future__ import annotations

import ast
import logging
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path, PurePosixPath

from generators.codegen.edit_apply import Change
from generators.codegen.reply_paths import is_test_path
from generators.validation import ValidationConfig
from generators.validation.change_tests import imports_any, module_name

__all__ = [
    "TESTS_ROOT",
    "code_key",
    "existing_tests",
    "is_test_path",
    "refusal_message",
    "refused_paths",
    "same_code",
    "tests_home",
    "unchanged",
    "untouched",
]

logger = logging.getLogger(__name__)

TESTS_ROOT = "tests"
_MAX_TEST_BYTES = 512_000
_DOCSTRING_HOLDERS = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)


def tests_home(module: str, component_roots: Sequence[str]) -> str:
    """Where the tests of ``module`` go (see the module docstring)."""
    parts = PurePosixPath(module).parts
    stem = PurePosixPath(module).stem
    for root in component_roots:
        root_parts = PurePosixPath(root).parts
        if parts[: len(root_parts)] == root_parts and len(parts) > len(root_parts):
            return PurePosixPath(TESTS_ROOT, *parts[len(root_parts) : -1], f"test_{stem}.py").as_posix()
    return f"{TESTS_ROOT}/test_{stem}.py"


def existing_tests(
    workspace: Path, roots: Sequence[str], modules: Sequence[str], config: ValidationConfig
) -> dict[str, str]:
    """The workspace's tests of ``modules``: each ``test_<stem>.py`` under ``roots`` that imports one of them (another
    tenant's ``test_<stem>.py`` tests another module); path → text, in path order."""
    found: dict[str, str] = {}
    home = workspace.resolve()
    for module in modules:
        name = module_name(module, config)
        for root in roots:
            folder = workspace / root
            if not folder.is_dir():
                continue
            for path in sorted(folder.rglob(f"test_{PurePosixPath(module).stem}.py")):
                rel = path.relative_to(workspace).as_posix()
                text = _read_test(path, home)
                if rel not in found and text is not None and _imports(text, rel, name, config):
                    found[rel] = text
    return dict(sorted(found.items()))


def _read_test(path: Path, home: Path) -> str | None:
    try:
        if not path.is_file() or not path.resolve().is_relative_to(home) or path.stat().st_size > _MAX_TEST_BYTES:
            return None
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        logger.warning("cannot read the test file %s: %s", path, exc)
        return None


def _imports(text: str, path: str, module: str, config: ValidationConfig) -> bool:
    try:
        return imports_any(ast.parse(text, filename=path), path, [module], config)
    except (SyntaxError, ValueError):
        return False


def refused_paths(change: Change, allowed: Collection[str]) -> list[str]:
    """The paths ``change`` writes that are not ``allowed``, sorted."""
    return sorted(set(change.files) - set(allowed))


def refusal_message(refused: Sequence[str], allowed: Collection[str], tests: Collection[str]) -> str:
    """Why a reply that writes ``refused`` paths was refused, for the model; ``tests`` are where its tests go."""
    names = ", ".join(refused)
    text = (
        f"Your reply writes {names}, which you were not asked to write, so none of it was used. You may write only "
        f"{', '.join(sorted(allowed))}. Send your reply again with only those files."
    )
    misplaced = [path for path in refused if path.startswith(f"{TESTS_ROOT}/") or is_test_path(path)]
    if misplaced and tests:
        text += (
            f" Tests go in {' or '.join(sorted(tests))}, exactly there: tests anywhere else are never run "
            f"({', '.join(misplaced)})."
        )
    return text


def same_code(before: str, after: str, path: str) -> bool:
    """Whether ``after`` differs from ``before`` only in whitespace, comments or docstrings (see the module doc)."""
    if before == after:
        return True
    if not path.endswith(".py"):
        return before.split() == after.split()
    try:
        return _code(before) == _code(after)
    except (SyntaxError, ValueError):
        return False


def unchanged(step: Change, shown: Mapping[str, str]) -> str | None:
    """Why a reply's ``step`` is no change (every file it writes byte-identical to ``shown``, the files as the model
    was shown them), or ``None``."""
    if any(shown.get(path) != text for path, text in step.files.items()):
        return None
    return (
        "Your reply changes nothing: every file it sends is byte-identical to the file as you were shown it. Make the "
        "change the task asks for, by SEARCH/REPLACE edits whose REPLACE part differs from the SEARCH part."
    )


def untouched(change: Change, original: Mapping[str, str], targets: Sequence[str]) -> str | None:
    """Why an improvement's ``change`` is no change (the code of none of ``targets``, the modules it was asked to
    improve, differs from ``original``), or ``None``."""
    if not targets or any(not same_code(original[p], change.files[p], p) for p in targets if p in change.files):
        return None
    names = ", ".join(targets)
    what = "only tests" if not any(p in change.files for p in targets) else "only whitespace, comments or docstrings"
    return (
        f"Your reply changes {what} of {names}: the task is to improve the code of {names}, and such a change cannot "
        "make it better. Change the code itself (whitespace, comments and docstrings do not count) and keep its "
        "tests passing."
    )


def code_key(text: str) -> str:
    """What :func:`same_code` compares of a Python module: its syntax tree without docstrings (its words, when it
    does not parse); the improvement cycle fingerprints attempts with it."""
    try:
        return _code(text)
    except (SyntaxError, ValueError):
        return " ".join(text.split())


def _code(text: str) -> str:
    tree = ast.parse(text)
    for node in ast.walk(tree):
        if isinstance(node, _DOCSTRING_HOLDERS) and node.body:
            first = node.body[0]
            if (
                isinstance(first, ast.Expr)
                and isinstance(first.value, ast.Constant)
                and isinstance(first.value.value, str)
            ):
                node.body = node.body[1:]
    return ast.dump(tree)
