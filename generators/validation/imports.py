"""Stage 2: every import resolves, in the changed workspace or among installed packages, without running any code.

Installed packages are found by ``importlib.util.find_spec`` on the top-level name only (which reads no module
code); submodules are looked up on disk in the top-level package's search locations, never by importing a parent.
"""

from __future__ import annotations

import ast
import importlib.machinery
import importlib.util
import sys
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

from generators.validation.models import Finding, Severity, StageOutcome, ValidationConfig
from generators.validation.overlay import Overlay

_IMPORT_ERRORS = {"ImportError", "ModuleNotFoundError", "Exception", "BaseException"}


def module_parts(path: str, config: ValidationConfig) -> list[str]:
    """The dotted-name parts of the module at ``path`` (``a/b/__init__.py`` → ``[a, b]``), source root stripped."""
    parts = list(PurePosixPath(path).with_suffix("").parts)
    for root in sorted(config.source_roots, key=len, reverse=True):
        root_parts = list(PurePosixPath(root).parts) if root else []
        if parts[: len(root_parts)] == root_parts:
            parts = parts[len(root_parts) :]
            break
    return parts[:-1] if parts and parts[-1] == "__init__" else parts


def absolute_module(path: str, node: ast.ImportFrom, config: ValidationConfig) -> str | None:
    """The absolute module an ``ImportFrom`` names (relative ones resolved from ``path``); ``None`` if it climbs out."""
    if node.level == 0:
        return node.module or ""
    package = module_parts(path, config)
    if not path.endswith("__init__.py"):
        package = package[:-1]
    if node.level - 1 > len(package):
        return None
    base = package[: len(package) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


class Resolver:
    """Finds modules in the changed workspace first, then among installed ones; caches answers per run."""

    def __init__(self, overlay: Overlay, config: ValidationConfig) -> None:
        self.overlay = overlay
        self.roots = [PurePosixPath(r) for r in config.source_roots]
        self._cache: dict[str, tuple[str, str | None] | None] = {}

    def find(self, dotted: str) -> tuple[str, str | None] | None:
        """``("workspace", file or None for a namespace folder)`` or ``("installed", None)``; ``None`` if not found."""
        if dotted not in self._cache:
            found = self._find_workspace(dotted)
            # A namespace folder loses to a regular module or package anywhere on the path, as in Python.
            if (found is None or found[1] is None) and _installed(dotted):
                found = ("installed", None)
            self._cache[dotted] = found
        return self._cache[dotted]

    def _find_workspace(self, dotted: str) -> tuple[str, str | None] | None:
        rel = PurePosixPath(*dotted.split("."))
        for root in self.roots:
            base = (root / rel).as_posix()
            for candidate in (f"{base}.py", f"{base}/__init__.py"):
                if self.overlay.is_file(candidate):
                    return ("workspace", candidate)
            if self.overlay.is_dir(base):
                return ("workspace", None)
        return None

    def has_name(self, module: str, name: str) -> bool:
        """Whether ``from module import name`` can succeed: a submodule, or a name the module's file defines."""
        if self.find(f"{module}.{name}") is not None:
            return True
        found = self.find(module)
        if found is None or found[0] != "workspace":
            return True  # installed module: attributes cannot be known without running it
        if found[1] is None:
            return False  # namespace folder: only submodules
        tree = self.overlay.tree(found[1])
        return tree is None or name in defined_names(tree)


class _AnyName(set[str]):
    def __contains__(self, item: object) -> bool:
        return True


def defined_names(tree: ast.Module) -> set[str]:
    """Names a module binds at top level (through ``if``/``try``/``with`` blocks); every name if it has
    ``__getattr__`` or a star import."""
    names: set[str] = set()
    pending: list[ast.stmt] = list(tree.body)
    while pending:
        node = pending.pop()
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            if any(alias.name == "*" for alias in node.names):
                return _AnyName()
            names.update(alias.asname or alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.If | ast.Try | ast.With | ast.For | ast.While):
            names.update(n.id for n in _targets(node))
            for block in ("body", "orelse", "finalbody"):
                pending.extend(getattr(node, block, []))
            pending.extend(stmt for handler in getattr(node, "handlers", []) for stmt in handler.body)
        else:
            names.update(n.id for n in _targets(node))
    return _AnyName() if "__getattr__" in names else names


def _targets(node: ast.stmt) -> Iterable[ast.Name]:
    if isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign | ast.For):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        return (n for t in targets for n in ast.walk(t) if isinstance(n, ast.Name))
    if isinstance(node, ast.With):
        bound = [item.optional_vars for item in node.items if item.optional_vars is not None]
        return (n for target in bound for n in ast.walk(target) if isinstance(n, ast.Name))
    return ()


def _installed(dotted: str) -> bool:
    parts = dotted.split(".")
    try:
        spec = importlib.util.find_spec(parts[0])
    except (ImportError, ValueError):
        return False
    if spec is None:
        return False
    locations = list(spec.submodule_search_locations or [])
    for depth in range(1, len(parts)):
        loaded = sys.modules.get(".".join(parts[: depth + 1]))
        if loaded is not None:
            locations = list(getattr(loaded, "__path__", []))
            continue
        found = _find_on_disk(locations, parts[depth])
        if found is None:
            return False
        locations = found
    return True


def _find_on_disk(locations: list[str], name: str) -> list[str] | None:
    """Search locations of ``name`` if it is a package or module in one of ``locations`` (``[]`` for a module)."""
    for location in locations:
        folder = Path(location) / name
        if folder.is_dir():
            return [str(folder)]
        if any((Path(location) / f"{name}{suffix}").is_file() for suffix in importlib.machinery.all_suffixes()):
            return []
    return None


class _ImportVisitor(ast.NodeVisitor):
    def __init__(self, path: str, resolver: Resolver, config: ValidationConfig) -> None:
        self.path, self.resolver, self.config = path, resolver, config
        self.findings: list[Finding] = []
        self._guarded = 0

    def visit_Try(self, node: ast.Try) -> None:
        guarded = any(_catches_import_error(h) for h in node.handlers)
        self._guarded += guarded
        for stmt in node.body:
            self.visit(stmt)
        self._guarded -= guarded
        for rest in (*node.handlers, *node.orelse, *node.finalbody):
            self.visit(rest)

    visit_TryStar = visit_Try  # type: ignore[assignment]

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if self.resolver.find(alias.name) is None:
                self._report(node, f"cannot resolve module {alias.name!r} in the workspace or installed packages")

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        module = absolute_module(self.path, node, self.config)
        shown = "." * node.level + (node.module or "")
        if module is None:
            self._report(node, f"relative import {shown!r} climbs above the top-level package")
        elif module == "__future__":
            return
        elif module and self.resolver.find(module) is None:
            self._report(node, f"cannot resolve module {shown!r} in the workspace or installed packages")
        else:
            for alias in node.names:
                if alias.name != "*" and not self._has(module, alias.name):
                    self._report(node, f"module {shown or '.'!r} has no submodule or name {alias.name!r}")

    def _has(self, module: str, name: str) -> bool:
        if not module:
            return self.resolver.find(name) is not None
        return self.resolver.has_name(module, name)

    def _report(self, node: ast.stmt, message: str) -> None:
        severity: Severity = "warning" if self._guarded else "error"
        if self._guarded:
            message += " (inside try/except ImportError)"
        self.findings.append(Finding(self.path, node.lineno, message, "IMP001", severity))


def _catches_import_error(handler: ast.ExceptHandler) -> bool:
    if handler.type is None:
        return True
    kinds = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
    return any(isinstance(k, ast.Name) and k.id in _IMPORT_ERRORS for k in kinds)


def check_imports(overlay: Overlay, config: ValidationConfig) -> StageOutcome:
    """Report each import in the changed files that resolves neither in the changed workspace nor installed."""
    resolver = Resolver(overlay, config)
    findings: list[Finding] = []
    sources = overlay.parsed_sources()
    for path, tree in sources:
        visitor = _ImportVisitor(path, resolver, config)
        visitor.visit(tree)
        findings.extend(visitor.findings)
    return StageOutcome(findings, note=f"imports of {len(sources)} file(s) checked")
