"""Turn a parsed reply into a ``Change``: new contents for files under the allowed roots of a workspace.

Edits apply only where the SEARCH text matches exactly once. Every failed edit of a reply is collected into one
``EditConflictError`` whose message tells the model which file and edit failed, where the nearest lines are
("did you mean", with line numbers) and what to send instead; nothing is applied then. Paths are checked before
any content is looked at: relative, no ``..``, under an allowed root, and still inside it once symlinks resolve.
"""

from __future__ import annotations

import difflib
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from generators.codegen.edits import EditBlock, FileBlock, ParsedReply, Writable, parse_reply
from generators.errors import EditConflictError, EditFailure, UnsafeReplyPathError

__all__ = [
    "DEFAULT_ROOTS",
    "Change",
    "apply_blocks",
    "apply_reply",
    "check_path",
    "nearest_lines",
]

logger = logging.getLogger(__name__)

DEFAULT_ROOTS: tuple[str, ...] = ("components/", "tests/")
_SAFE_PATH = re.compile(r"^[A-Za-z0-9_.\-/]+$")
_NEAREST_MIN_RATIO = 0.5
_NEAREST_CANDIDATES = 5
_WORDS = re.compile(r"\w+")


@dataclass(frozen=True)
class Change:
    """New file contents keyed by workspace-relative path; ``original`` holds the previous content of modified files."""

    files: Mapping[str, str]
    original: Mapping[str, str] = field(default_factory=dict)

    @property
    def created(self) -> list[str]:
        """Paths the change creates, sorted."""
        return sorted(path for path in self.files if path not in self.original)

    @property
    def modified(self) -> list[str]:
        """Paths the change rewrites, sorted."""
        return sorted(path for path in self.files if path in self.original)

    def diff(self, context: int = 3) -> str:
        """A unified diff of every file (created files against ``/dev/null``), in path order."""
        parts: list[str] = []
        for path in sorted(self.files):
            before = self.original.get(path)
            parts.extend(
                difflib.unified_diff(
                    (before or "").splitlines(keepends=True),
                    self.files[path].splitlines(keepends=True),
                    fromfile="/dev/null" if before is None else f"a/{path}",
                    tofile=f"b/{path}",
                    n=context,
                )
            )
        return "".join(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in parts)

    def then(self, later: Change) -> Change:
        """This change followed by ``later`` (a retry round edited on top of it), as one change from the start."""
        original = dict(self.original)
        original.update({path: text for path, text in later.original.items() if path not in self.files})
        return Change(files={**self.files, **later.files}, original=original)


def check_path(path: str, workspace: Path, allowed_roots: Sequence[str] = DEFAULT_ROOTS) -> str:
    """Return ``path`` normalised (POSIX, relative) when it is safe to write under ``workspace``.

    Raises:
        UnsafeReplyPathError: the path is empty, absolute, holds ``..`` or unusual characters, is outside
            ``allowed_roots``, or resolves (through a symlink) outside its root.
    """
    roots = ", ".join(allowed_roots)
    if not path or not _SAFE_PATH.match(path) or path.startswith("/") or re.match(r"^[A-Za-z]:", path):
        raise UnsafeReplyPathError(
            f"Path {path!r} is refused: use a relative path of letters, digits, '_', '-', '.' and '/' under one of "
            f"{roots} (e.g. components/cache.py)."
        )
    parts = PurePosixPath(path).parts
    if any(part in {"..", "."} for part in parts) or "//" in path or path.endswith("/"):
        raise UnsafeReplyPathError(
            f"Path {path!r} is refused: '..', '.' and empty segments are not allowed; use {roots}."
        )
    normal = PurePosixPath(*parts)
    for root in allowed_roots:
        root_parts = PurePosixPath(root).parts
        if parts[: len(root_parts)] == root_parts and len(parts) > len(root_parts):
            home = workspace.resolve()
            base = (workspace / PurePosixPath(*root_parts)).resolve()
            target = (workspace / normal).resolve()
            if not base.is_relative_to(home) or not target.is_relative_to(base):
                raise UnsafeReplyPathError(
                    f"Path {path!r} is refused: it resolves through a symlink to outside {root}. Write to a path "
                    "that is a real location under the allowed roots."
                )
            if target.is_dir():
                raise UnsafeReplyPathError(f"Path {path!r} is a directory; name a file under it instead.")
            return normal.as_posix()
    raise UnsafeReplyPathError(
        f"Path {path!r} is outside the folders you may write to ({roots}); put the file under one."
    )


def apply_reply(
    reply: str,
    files: Mapping[str, str],
    workspace: Path,
    allowed_roots: Sequence[str] = DEFAULT_ROOTS,
    writable: Writable | None = None,
) -> Change:
    """Parse ``reply`` and apply it to ``files`` (the current content of the files the model was shown);
    ``writable`` lets a block without a path line count as the one file its content is for (``parse_reply``).

    Raises:
        ReplyFormatError: the reply does not follow the reply format.
        UnsafeReplyPathError: a path is refused (see ``check_path``).
        EditConflictError: some SEARCH texts matched nowhere or more than once.
    """
    parsed = parse_reply(reply, writable)
    if parsed.guessed:
        logger.info("blocks without a path line, taken by their content: %s", "; ".join(parsed.guessed))
    return apply_blocks(parsed, files, workspace, allowed_roots)


def apply_blocks(
    parsed: ParsedReply,
    files: Mapping[str, str],
    workspace: Path,
    allowed_roots: Sequence[str] = DEFAULT_ROOTS,
) -> Change:
    """Apply parsed blocks in order; see ``apply_reply`` for what is raised."""
    paths = {path: check_path(path, workspace, allowed_roots) for path in parsed.paths}
    known = {check_path(path, workspace, allowed_roots): text for path, text in files.items()}
    current: dict[str, str] = {}
    failures: list[EditFailure] = []
    applied = 0
    for block in parsed.blocks:
        path = paths[block.path]
        if isinstance(block, FileBlock):
            if path not in known and (workspace / path).exists():
                raise UnsafeReplyPathError(
                    f"{path} already exists in the workspace but was not shown to you; choose another name, or edit "
                    "only the files you were given."
                )
            current[path] = block.content
            continue
        base = current.get(path, known.get(path))
        if base is None:
            shown = ", ".join(sorted(known)) or "none"
            failures.append(
                EditFailure(
                    path,
                    block.number,
                    f"Edit {block.number}: {path} is not a file you were "
                    f"shown, so it cannot be edited (files you may edit: {shown}). To create "
                    "it, send the whole file instead.",
                )
            )
            continue
        updated, failure = _apply_one(base, block, path)
        if failure is not None:
            failures.append(failure)
        else:
            current[path] = updated
            applied += 1
    if failures:
        raise EditConflictError(failures, applied)
    return Change(files=current, original={path: known[path] for path in current if path in known})


def _apply_one(text: str, block: EditBlock, path: str) -> tuple[str, EditFailure | None]:
    where = f"Edit {block.number} ({path}, line {block.line} of your reply)"
    if not block.search:
        return text, EditFailure(
            path,
            block.number,
            f"{where}: the SEARCH part is empty. Copy the lines to "
            "replace from the file; to create a new file send the whole file instead.",
        )
    starts = _find_all(text, block.search)
    if len(starts) == 1:
        start = starts[0]
        return text[:start] + block.replace + text[start + len(block.search) :], None
    if starts:
        spans = ", ".join(_span(text, start, block.search) for start in starts[:5])
        report = (
            f"{where}: the SEARCH text matches {len(starts)} places (lines {spans}). Include more "
            "surrounding lines so that it matches exactly one."
        )
        return text, EditFailure(path, block.number, report)
    report = f"{where}: the SEARCH text matches nothing in the file."
    if block.replace and block.replace in text:
        report += " Its REPLACE text is already in the file: if this edit is already made, leave it out."
    nearest = nearest_lines(text, block.search)
    if nearest is not None:
        first, excerpt = nearest
        count = excerpt.count("\n")
        report += f" Did you mean lines {first}-{first + count - 1}?\n{_numbered(excerpt, first)}"
    report += (
        "\nSEARCH must repeat the file's lines exactly, character for character, including indentation, "
        "blank lines and comments."
    )
    return text, EditFailure(path, block.number, report)


def _find_all(text: str, needle: str) -> list[int]:
    starts: list[int] = []
    start = text.find(needle)
    while start != -1:
        starts.append(start)
        start = text.find(needle, start + 1)
    return starts


def _span(text: str, start: int, needle: str) -> str:
    first = text.count("\n", 0, start) + 1
    last = first + max(needle.count("\n"), 1) - 1
    return str(first) if last == first else f"{first}-{last}"


def nearest_lines(text: str, search: str) -> tuple[int, str] | None:
    """The window of ``text`` most similar to ``search`` (same number of lines): its first line number and lines.

    Windows are ranked cheaply by the words their lines share with the SEARCH lines; the best few are then compared
    line by line with ``difflib``. ``None`` when nothing is at least half similar.
    """
    lines = text.splitlines(keepends=True)
    wanted = search.splitlines(keepends=True)
    if not lines or not wanted:
        return None
    size = min(len(wanted), len(lines))
    wanted_words = [frozenset(_WORDS.findall(line)) for line in wanted]
    prefix = [0.0]
    for line in lines:
        words = frozenset(_WORDS.findall(line))
        prefix.append(prefix[-1] + max(_jaccard(words, other) for other in wanted_words))
    starts = range(len(lines) - size + 1)
    ranked = sorted(starts, key=lambda start: (prefix[start] - prefix[start + size], start))[:_NEAREST_CANDIDATES]
    best_ratio, best_start = 0.0, 0
    for start in sorted(ranked):
        window = lines[start : start + size]
        ratio = sum(difflib.SequenceMatcher(None, a, b).ratio() for a, b in zip(window, wanted, strict=False)) / size
        if ratio > best_ratio:
            best_ratio, best_start = ratio, start
    if best_ratio < _NEAREST_MIN_RATIO:
        return None
    return best_start + 1, "".join(lines[best_start : best_start + size])


def _jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


def _numbered(excerpt: str, first: int) -> str:
    return "".join(
        f"{first + offset:5d} | {line.rstrip(chr(10))}\n" for offset, line in enumerate(excerpt.splitlines())
    )
