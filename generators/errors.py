"""Errors the generators raise. Messages are written for the agent that called the tool: what was wrong, what to do."""

from __future__ import annotations

import errno
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


class GeneratorError(Exception):
    """Base class: a request the generators cannot fulfil as asked."""


class EditError(GeneratorError):
    """A model's reply cannot become a change: malformed, a refused path, or a SEARCH that matches 0 or 2+ times.

    The message is the report to send back to the model. Subclasses: ``edits.ReplyFormatError``,
    ``edit_apply.UnsafeReplyPathError``, ``edit_apply.EditConflictError``.
    """


class StorageFullError(GeneratorError):
    """A write failed because its folder is full: the disk (ENOSPC), the quota (EDQUOT), or a database at its size
    limit (SQLITE_FULL). Nothing was half-written; reads keep working and the same write succeeds once there is space
    again. ``kind`` says which folder (the tool edge names the setting that moves it)."""

    def __init__(self, directory: Path, reason: str, kind: Literal["data directory", "workspace"]) -> None:
        super().__init__(f"the {kind} {directory} is full ({reason})")
        self.directory = directory
        self.reason = reason
        self.kind = kind


def full_reason(exc: BaseException) -> str | None:
    """Why ``exc`` means "no space" (SQLite's SQLITE_FULL, or ENOSPC / EDQUOT from the OS), or ``None``."""
    if isinstance(exc, sqlite3.Error) and getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL:
        return str(exc)
    if isinstance(exc, OSError) and exc.errno in FULL_ERRNOS:
        return exc.strerror or str(exc)
    return None


@contextmanager
def storage_full(directory: Path, kind: Literal["data directory", "workspace"] = "data directory") -> Iterator[None]:
    """Raise "disk full" from the block as :class:`StorageFullError` about ``directory``; other errors pass."""
    try:
        yield
    except (sqlite3.Error, OSError) as exc:
        reason = full_reason(exc)
        if reason is None:
            raise
        raise StorageFullError(directory, reason, kind) from exc
