"""What the workspace holds, read with ``ast`` and never executed: modules under the component roots, their
public names, and the modules closest to a piece of text (shared-token similarity) to show the model as patterns.
"""

from __future__ import annotations

import ast
import logging
import math
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

__all__ = ["ModuleInfo", "WorkspaceOverview", "scan_workspace", "tokens"]

logger = logging.getLogger(__name__)

_SKIP_DIRS = {"__pycache__", ".git", ".venv", "venv", "node_modules", ".mypy_cache", ".pytest_cache", ".ruff_cache"}
_WORD = re.compile(r"[A-Za-z][a-z]+|[A-Z]+(?![a-z])|[0-9]+")
_STOP_WORDS = (
    "self cls the and for with from import return def class none true false not this that are was str int float "
    "bool list dict set tuple any pass raise else elif try except finally while yield async await lambda args "
    "kwargs init test tests"
)
_STOP = frozenset(_STOP_WORDS.split())


def tokens(text: str) -> frozenset[str]:
    """Lower-case words of ``text``: identifiers split at ``_`` and case changes, short and common words dropped."""
    return frozenset(
        word for word in (match.lower() for match in _WORD.findall(text)) if len(word) > 2 and word not in _STOP
    )


@dataclass(frozen=True)
class ModuleInfo:
    """One module: its workspace-relative path, public top-level names, size, and the words it is made of."""

    path: str
    names: tuple[str, ...]
    lines: int
    words: frozenset[str]
    error: str | None = None


@dataclass(frozen=True)
class WorkspaceOverview:
    """The modules under the roots, in path order; ``truncated`` when ``max_modules`` cut the scan short."""

    workspace: Path
    roots: tuple[str, ...]
    modules: tuple[ModuleInfo, ...]
    truncated: bool = False

    def render(self, limit: int, names_per_module: int = 12) -> str:
        """A tree of the modules with their public names, at most ``limit`` characters."""
        out: list[str] = []
        used = 0
        directory = None
        for index, module in enumerate(self.modules):
            folder, _, name = module.path.rpartition("/")
            lines: list[str] = []
            if folder != directory:
                lines.append(f"{folder}/")
                directory = folder
            shown = ", ".join(module.names[:names_per_module])
            more = f", +{len(module.names) - names_per_module} more" if len(module.names) > names_per_module else ""
            detail = f"({module.error})" if module.error else (shown + more or "no public names")
            lines.append(f"  {name} [{module.lines} lines]: {detail}")
            text = "\n".join(lines) + "\n"
            left = len(self.modules) - index
            if used + len(text) > limit - 40:
                out.append(f"... and {left} more modules\n")
                break
            out.append(text)
            used += len(text)
        else:
            if self.truncated:
                out.append("... (scan stopped at the module limit)\n")
        return "".join(out) if out else "(no Python modules under " + ", ".join(self.roots) + ")\n"

    def closest(self, query: str, count: int, exclude: Iterable[str] = ()) -> list[ModuleInfo]:
        """The ``count`` modules sharing most words with ``query`` (cosine over word sets), best first."""
        wanted = tokens(query)
        skip = set(exclude)
        scored: list[tuple[float, str, ModuleInfo]] = []
        for module in self.modules:
            if module.path in skip or module.error or not module.words:
                continue
            shared = len(wanted & module.words)
            if shared:
                scored.append((-shared / math.sqrt(len(wanted) * len(module.words)), module.path, module))
        scored.sort(key=lambda item: (item[0], item[1]))
        return [module for _, _, module in scored[:count]]

    def source(self, path: str) -> str:
        """The text of a module listed in this overview."""
        return (self.workspace / path).read_text(encoding="utf-8", errors="replace")


def scan_workspace(
    workspace: Path,
    roots: Sequence[str] = ("components/", "tests/"),
    *,
    max_modules: int = 2000,
    max_bytes: int = 512_000,
    exclude: Sequence[str] = (),
) -> WorkspaceOverview:
    """Read every ``.py`` file under ``roots`` (not following symlinks out of the workspace), up to ``max_modules``.

    Files larger than ``max_bytes`` are listed without names. Folders in ``exclude`` (workspace-relative, e.g.
    other tenants' ``components/<tenant>/``) are left out, so their code never reaches the prompt.
    """
    home = workspace.resolve()
    modules: list[ModuleInfo] = []
    truncated = False
    skipped = tuple(PurePosixPath(folder).parts for folder in exclude)
    for path in _python_files(workspace, roots, home, skipped):
        if len(modules) >= max_modules:
            truncated = True
            break
        modules.append(_read_module(workspace, path, max_bytes))
    return WorkspaceOverview(workspace=workspace, roots=tuple(roots), modules=tuple(modules), truncated=truncated)


def _python_files(
    workspace: Path, roots: Sequence[str], home: Path, skipped: tuple[tuple[str, ...], ...]
) -> Iterable[Path]:
    for root in roots:
        base = workspace / root
        if not base.is_dir() or not base.resolve().is_relative_to(home):
            continue
        for folder, dirs, files in os.walk(base):
            parts = Path(folder).relative_to(workspace).parts
            if any(parts[: len(skip)] == skip for skip in skipped):
                dirs[:] = []
                continue
            dirs[:] = sorted(name for name in dirs if name not in _SKIP_DIRS and not name.startswith("."))
            for name in sorted(files):
                path = Path(folder) / name
                if name.endswith(".py") and path.resolve().is_relative_to(home):
                    yield path


def _read_module(workspace: Path, path: Path, max_bytes: int) -> ModuleInfo:
    relative = path.relative_to(workspace).as_posix()
    try:
        data = path.read_bytes()
    except OSError as exc:
        logger.warning("cannot read %s: %s", relative, exc)
        return ModuleInfo(relative, (), 0, frozenset(), error="unreadable")
    lines = data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)
    if len(data) > max_bytes:
        return ModuleInfo(relative, (), lines, tokens(relative), error="too large to read")
    text = data.decode("utf-8", errors="replace")
    try:
        tree = ast.parse(text, filename=relative)
    except SyntaxError as exc:
        return ModuleInfo(relative, (), lines, tokens(relative), error=f"syntax error on line {exc.lineno}")
    # Words of the raw text (identifiers, docstrings, comments): as good for similarity as an AST walk, 7x faster.
    words = tokens(relative) | tokens(text)
    return ModuleInfo(relative, _public_names(tree), lines, words)


def _public_names(tree: ast.Module) -> tuple[str, ...]:
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and any(isinstance(target, ast.Name) and target.id == "__all__" for target in node.targets)
            and isinstance(node.value, ast.List | ast.Tuple)
        ):
            return tuple(e.value for e in node.value.elts if isinstance(e, ast.Constant) and isinstance(e.value, str))
    names: list[str] = []
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
            names.append(f"class {node.name}")
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and not node.name.startswith("_"):
            names.append(f"{'async def' if isinstance(node, ast.AsyncFunctionDef) else 'def'} {node.name}")
    return tuple(names)
