"""Mechanical repairs of a model's change before it is validated: what small models often forget and a tool can add
without guessing.

One repair so far: a module used as ``name.attribute`` that is never imported nor bound in the file (``re.findall``
with no ``import re``; ``pytest.raises`` with no ``import pytest``) gets its ``import`` — only for the standard
library's modules and pytest, and only where no star import binds the name (or could: one from a module the server
has not loaded). Nothing else is touched.
Each repair is recorded with the round (and told to the model when the round fails for another reason); the
validation then judges the repaired code like any other, so a repair can never let a wrong change through.
"""

from __future__ import annotations

import ast
import builtins
import re
import sys

from generators.codegen.edit_apply import Change

EXTRA_MODULES = frozenset({"pytest"})  # installed beside the server and imported by every test file
_BUILTINS = frozenset(dir(builtins))
_LINES = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+$")


def repair(change: Change) -> tuple[Change, list[str]]:
    """``change`` with its Python files repaired, and one line per repair (empty: nothing was repaired)."""
    files = dict(change.files)
    notes: list[str] = []
    for path, text in change.files.items():
        if not path.endswith(".py"):
            continue
        missing = missing_imports(text)
        repaired = with_imports(text, missing) if missing else None
        if repaired is not None:
            files[path] = repaired
            names = ", ".join(f"import {name}" for name in missing)
            notes.append(f"{path} used {', '.join(missing)} without importing it: the server added `{names}`")
    if not notes:
        return change, []
    return Change(files, change.original), notes


def missing_imports(source: str) -> list[str]:
    """Modules (standard library, pytest) that ``source`` uses as ``name.attribute`` but never imports or binds."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []  # the syntax stage reports it
    bound: set[str] = set()
    used: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and any(alias.name == "*" for alias in node.names):
            names = _star_names(node)
            if names is None:
                return []  # it may bind any name
            bound.update(names)
        bound.update(_bound_by(node))
        base = node.value if isinstance(node, ast.Attribute) else None
        if isinstance(base, ast.Name) and isinstance(base.ctx, ast.Load):
            used.add(base.id)
    wanted = (name for name in used - bound if name not in _BUILTINS)
    return sorted(name for name in wanted if name in sys.stdlib_module_names or name in EXTRA_MODULES)


def _star_names(node: ast.ImportFrom) -> set[str] | None:
    """What ``from <module> import *`` binds, for a module the server has loaded already (``typing``); ``None`` when
    that is not known (the server imports nothing a reply names: importing runs a module's code)."""
    module = sys.modules.get(node.module or "") if node.level == 0 else None
    if module is None:
        return None
    public = getattr(module, "__all__", None)
    return set(public) if public is not None else {name for name in vars(module) if not name.startswith("_")}


def _bound_by(node: ast.AST) -> list[str]:
    """The names ``node`` binds in its scope."""
    if isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load):
        return [node.id]
    if isinstance(node, ast.Import | ast.ImportFrom):
        return [(alias.asname or alias.name).split(".")[0] for alias in node.names]
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return [node.name]
    if isinstance(node, ast.arg):
        return [node.arg]
    if isinstance(node, ast.Global | ast.Nonlocal):
        return list(node.names)
    if isinstance(node, ast.ExceptHandler | ast.MatchAs | ast.MatchStar) and node.name:
        return [node.name]
    if isinstance(node, ast.MatchMapping) and node.rest:
        return [node.rest]
    return []


def with_imports(source: str, modules: list[str]) -> str | None:
    """``source`` with ``import <module>`` lines after its docstring and ``__future__`` imports; ``None`` when that
    would not parse (no repair is better than a broken one)."""
    tree = ast.parse(source)
    body = list(tree.body)
    after = 0  # the line after which the imports go (0: the top)
    for statement in body:
        docstring = isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant)
        future = isinstance(statement, ast.ImportFrom) and statement.module == "__future__"
        if not (docstring and statement is body[0]) and not future:
            break
        after = statement.end_lineno or statement.lineno
    lines = _LINES.findall(source)  # lines as the parser counts them (str.splitlines also breaks at \f, \x1c...)
    added = [f"import {module}\n" for module in modules]
    head = lines[:after]
    if head and not head[-1].endswith(("\n", "\r")):
        head[-1] += "\n"
    repaired = "".join([*head, *(["\n"] if after else []), *added, *lines[after:]])
    try:
        ast.parse(repaired)
    except SyntaxError:
        return None
    return repaired
