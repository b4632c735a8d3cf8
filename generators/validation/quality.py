"""Stage 5: cyclomatic complexity and length per function, docstrings on public functions and classes.

Reported as warnings; only gross cases (over ``complexity_fail`` / ``length_fail``) fail the stage.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import PurePosixPath

from generators.validation.models import Finding, StageOutcome, ValidationConfig

Function = ast.FunctionDef | ast.AsyncFunctionDef
_BRANCHES = (ast.If, ast.IfExp, ast.For, ast.AsyncFor, ast.While, ast.ExceptHandler, ast.Assert, ast.match_case)


def complexity(function: Function) -> int:
    """McCabe complexity: 1 + decisions (branches, loops, handlers, boolean operators, comprehension clauses);
    nested functions and classes count on their own."""
    score = 1
    pending: list[ast.AST] = list(function.body)
    while pending:
        node = pending.pop()
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            continue
        if isinstance(node, _BRANCHES):
            score += 1
        elif isinstance(node, ast.BoolOp):
            score += len(node.values) - 1
        elif isinstance(node, ast.comprehension):
            score += 1 + len(node.ifs)
        pending.extend(ast.iter_child_nodes(node))
    return score


def _functions(tree: ast.Module) -> Iterator[tuple[Function, str, bool]]:
    """Each function with its qualified name and whether it is public (itself and every enclosing scope)."""
    pending: list[tuple[ast.AST, str, bool]] = [(tree, "", True)]
    while pending:
        node, prefix, public = pending.pop()
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                name = f"{prefix}{child.name}"
                child_public = public and not child.name.startswith("_") and not isinstance(node, Function)
                if isinstance(child, Function):
                    yield child, name, child_public
                pending.append((child, f"{name}.", child_public))


def _classes(tree: ast.Module) -> Iterator[ast.ClassDef]:
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
            yield node


def _is_test_file(path: str) -> bool:
    name = PurePosixPath(path).name
    return name.startswith("test_") or name.endswith("_test.py") or name == "conftest.py"


def check_quality(sources: list[tuple[str, ast.Module]], config: ValidationConfig) -> StageOutcome:
    """Complexity, length and docstring findings for each ``(path, tree)``."""
    findings: list[Finding] = []
    worst = 0
    for path, tree in sources:
        for function, name, public in _functions(tree):
            score = complexity(function)
            worst = max(worst, score)
            if score > config.complexity_warn:
                fail = score > config.complexity_fail
                limit = config.complexity_fail if fail else config.complexity_warn
                message = f"{name}() has cyclomatic complexity {score} (limit {limit}); split it into smaller functions"
                findings.append(Finding(path, function.lineno, message, "QUA001", "error" if fail else "warning"))
            start = min([function.lineno, *(d.lineno for d in function.decorator_list)])
            length = (function.end_lineno or function.lineno) - start + 1
            if length > config.length_warn:
                fail = length > config.length_fail
                limit = config.length_fail if fail else config.length_warn
                message = f"{name}() is {length} lines long (limit {limit}); split it"
                findings.append(Finding(path, function.lineno, message, "QUA002", "error" if fail else "warning"))
            if public and not _is_test_file(path) and not name.endswith("__") and ast.get_docstring(function) is None:
                message = f"public function {name}() has no docstring"
                findings.append(Finding(path, function.lineno, message, "QUA003", "warning"))
        for cls in _classes(tree):
            if not _is_test_file(path) and ast.get_docstring(cls) is None:
                message = f"public class {cls.name} has no docstring"
                findings.append(Finding(path, cls.lineno, message, "QUA003", "warning"))
    return StageOutcome(findings, note=f"highest complexity {worst}", details={"max_complexity": worst})
