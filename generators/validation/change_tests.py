"""What the tests stage asks of a change's test files before it runs them: they exist, and each imports a module of
the change (read with ``ast``, never executed), so that its tests exercise the changed code rather than nothing."""

from __future__ import annotations

import ast
from collections.abc import Collection

from generators.validation.imports import absolute_module, module_parts
from generators.validation.models import Finding, ValidationConfig
from generators.validation.names import constant_str, dotted_name

__all__ = ["import_findings", "imports_any", "module_name"]

_IMPORTERS = frozenset({"importlib.import_module", "import_module", "__import__"})


def module_name(path: str, config: ValidationConfig) -> str:
    """The dotted name a module at ``path`` is imported by (``components/acme/x.py`` → ``components.acme.x``)."""
    return ".".join(module_parts(path, config))


def imports_any(tree: ast.Module, path: str, modules: Collection[str], config: ValidationConfig) -> bool:
    """Whether the module ``tree`` (at ``path``) imports one of ``modules`` (dotted names) anywhere in its code."""
    wanted = set(modules)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            if any(alias.name in wanted for alias in node.names):
                return True
        elif isinstance(node, ast.ImportFrom):
            base = absolute_module(path, node, config)
            if base is not None and (base in wanted or any(f"{base}.{a.name}" in wanted for a in node.names)):
                return True
        elif isinstance(node, ast.Call) and dotted_name(node.func, {}) in _IMPORTERS and node.args:
            found = constant_str(node.args[0])
            if found in wanted:
                return True
    return False


def import_findings(
    sources: dict[str, ast.Module | None], subjects: Collection[str], config: ValidationConfig
) -> list[Finding]:
    """A finding for each test file (path → its tree, ``None`` when it does not parse) importing none of the
    ``subjects`` (module paths)."""
    if not subjects:
        return []
    names = sorted(module_name(path, config) for path in subjects)
    shown = " or ".join(names)
    findings = []
    for path, tree in sorted(sources.items()):
        if tree is not None and not imports_any(tree, path, names, config):
            message = (
                f"{path} does not import {shown}, the code this change writes, so its tests cannot test it; import it "
                f"(e.g. `from {names[0]} import ...`) and call what it defines"
            )
            findings.append(Finding(path, 1, message, "TST005"))
    return findings
