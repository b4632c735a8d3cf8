"""The change applied over the workspace, without writing to it: lookups, parsed sources, and materialised copies."""

from __future__ import annotations

import ast
import os
import shutil
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path, PurePosixPath

from generators.errors import ValidationInputError


@dataclass(frozen=True, slots=True)
class SourceFile:
    """A changed ``.py`` file: its text and its tree (``None`` when it does not parse; ``error`` says why)."""

    path: str
    text: str
    tree: ast.Module | None
    error: SyntaxError | None


def normalize_path(raw: object) -> str:
    """Return ``raw`` as a clean relative POSIX path inside the workspace; raise ``ValidationInputError`` otherwise."""
    if not isinstance(raw, str) or not raw.strip():
        raise ValidationInputError(f"change path {raw!r} must be a non-empty relative path like 'components/x.py'")
    if "\\" in raw or "\x00" in raw:
        raise ValidationInputError(f"change path {raw!r} must use '/' separators and no NUL bytes")
    path = PurePosixPath(raw)
    if path.is_absolute() or ".." in path.parts:
        raise ValidationInputError(f"change path {raw!r} must be relative to the workspace, without '..'")
    if not path.parts or path.parts[0] in {".git", ".hg"}:
        raise ValidationInputError(f"change path {raw!r} must name a file outside the version-control folder")
    return path.as_posix()


class Overlay:
    """Read-only view of ``workspace`` with ``change`` (relative path → new content) laid over it."""

    def __init__(self, workspace: Path, change: Mapping[str, str]) -> None:
        if not workspace.is_dir():
            raise ValidationInputError(f"workspace {str(workspace)!r} is not a directory; pass an existing folder")
        self.workspace = workspace.resolve()
        self.change: dict[str, str] = {}
        for raw, content in change.items():
            if not isinstance(content, str):
                raise ValidationInputError(f"content of {raw!r} must be text (str), got {type(content).__name__}")
            self.change[normalize_path(raw)] = content
        self._dirs = {p.as_posix() for path in self.change for p in PurePosixPath(path).parents}
        self._parsed: dict[str, ast.Module | None] = {}

    @cached_property
    def sources(self) -> list[SourceFile]:
        """The changed ``.py`` files, parsed once, in path order."""
        files = []
        for path in sorted(p for p in self.change if p.endswith(".py")):
            text = self.change[path]
            try:
                tree: ast.Module | None = ast.parse(text, filename=path, type_comments=False)
                error = None
            except SyntaxError as exc:
                tree, error = None, exc
            except ValueError as exc:  # NUL bytes on some 3.11 patch releases
                tree, error = None, SyntaxError(str(exc))
            files.append(SourceFile(path, text, tree, error))
        return files

    def parsed_sources(self) -> list[tuple[str, ast.Module]]:
        """``(path, tree)`` for each changed ``.py`` file that parses."""
        return [(source.path, source.tree) for source in self.sources if source.tree is not None]

    def is_file(self, rel: str) -> bool:
        """True when ``rel`` is a file in the change or the workspace."""
        return rel in self.change or (self.workspace / rel).is_file()

    def is_dir(self, rel: str) -> bool:
        """True when ``rel`` is a folder in the workspace or one the change creates."""
        return rel in self._dirs or (self.workspace / rel).is_dir()

    def read(self, rel: str) -> str | None:
        """The text of ``rel`` as changed, or from the workspace; ``None`` when missing or unreadable."""
        if rel in self.change:
            return self.change[rel]
        try:
            return (self.workspace / rel).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return None

    def tree(self, rel: str) -> ast.Module | None:
        """The parsed module at ``rel`` (cached); ``None`` when missing or unparseable."""
        if rel not in self._parsed:
            text = self.read(rel)
            try:
                self._parsed[rel] = None if text is None else ast.parse(text, filename=rel)
            except (SyntaxError, ValueError):
                self._parsed[rel] = None
        return self._parsed[rel]

    def link_tree(self, dest: Path) -> None:
        """Lay out ``dest`` as the changed workspace: changed files written, everything else symlinked.

        Only the folders on the way to a changed file are real; cheap whatever the workspace's size.
        """
        real_dirs = {"."} | self._dirs
        for rel in sorted(real_dirs, key=lambda p: p.count("/")):
            target = dest / rel
            target.mkdir(parents=True, exist_ok=True)
            source = self.workspace / rel
            if source.is_dir():
                for entry in os.scandir(source):
                    child = (PurePosixPath(rel) / entry.name).as_posix()
                    if child not in real_dirs and child not in self.change and entry.name != ".git":
                        (target / entry.name).symlink_to(entry.path)
        for rel, content in self.change.items():
            (dest / rel).write_text(content, encoding="utf-8")

    def copy_tree(self, dest: Path, ignore: tuple[str, ...], skip: Collection[str] = ()) -> None:
        """Copy the workspace to ``dest`` (leaving out ``ignore`` names anywhere and the folders ``skip``, relative
        paths) and write the change over the copy."""
        patterns = shutil.ignore_patterns(*ignore)

        def ignored(folder: str, names: list[str]) -> set[str]:
            rel = PurePosixPath(Path(folder).relative_to(self.workspace).as_posix())
            return set(patterns(folder, names)) | {n for n in names if (rel / n).as_posix() in skip}

        shutil.copytree(self.workspace, dest, symlinks=True, ignore=ignored)
        root = dest.resolve()
        for rel, content in self.change.items():
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            if not target.parent.resolve().is_relative_to(root) or target.is_symlink():
                raise ValidationInputError(f"change path {rel!r} goes through a symlink out of the workspace")
            target.write_text(content, encoding="utf-8")
