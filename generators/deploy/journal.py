"""The deploy journal: one JSON file per workspace transaction, written (and fsynced) before the workspace is touched.

It names every file with its old and new sha256 and the temp file that carries the new bytes, so that after a crash
:func:`generators.deploy.transaction.resolve` can finish the transaction or undo it. Files are written through a temp
file and ``os.replace``, so a journal is either absent or complete.
"""

from __future__ import annotations

import json
import logging
import os
from contextlib import suppress
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal

from generators.errors import RecoveryError, StorageFullError, storage_full

logger = logging.getLogger(__name__)

TxnKind = Literal["deploy", "rollback"]
TxnState = Literal["prepared", "committed"]
_SUFFIX = ".journal.json"
_VERSION = 1


@dataclass(frozen=True, slots=True)
class JournalFile:
    """One file of a transaction. ``new_sha256`` ``None``: the file is deleted; ``old_sha256`` ``None``: it is new."""

    path: str
    old_sha256: str | None
    new_sha256: str | None
    temp: str | None


@dataclass(frozen=True, slots=True)
class Journal:
    """The intent of one transaction on the workspace."""

    txn_id: str
    kind: TxnKind
    deployment_id: str
    files: tuple[JournalFile, ...]
    state: TxnState = "prepared"

    def committed(self) -> Journal:
        """This journal with its state set to committed."""
        return replace(self, state="committed")


def fsync_dir(directory: Path) -> None:
    """Make a rename or unlink in ``directory`` durable (POSIX; a no-op elsewhere)."""
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def journal_path(journal_dir: Path, txn_id: str) -> Path:
    """Where the journal of ``txn_id`` lives."""
    return journal_dir / f"{txn_id}{_SUFFIX}"


def write_journal(journal_dir: Path, journal: Journal) -> None:
    """Write ``journal`` durably: temp file, fsync, replace, fsync of the folder.

    Raises:
        StorageFullError: no space for it (the journal folder lies in the data directory); the old journal, if any,
            is left as it was.
    """
    body = {"version": _VERSION, **asdict(journal)}
    target = journal_path(journal_dir, journal.txn_id)
    temp = target.with_name(target.name + ".tmp")
    try:
        with storage_full(journal_dir.parent):
            journal_dir.mkdir(parents=True, exist_ok=True)
            with open(temp, "w", encoding="utf-8") as handle:
                json.dump(body, handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, target)
    except StorageFullError:
        with suppress(FileNotFoundError):
            temp.unlink()  # a half-written temp file only takes the space that is missing
        raise
    fsync_dir(journal_dir)


def remove_journal(journal_dir: Path, txn_id: str) -> None:
    """Delete the journal of a finished transaction."""
    with suppress(FileNotFoundError):
        journal_path(journal_dir, txn_id).unlink()
    fsync_dir(journal_dir)


def read_journals(journal_dir: Path) -> list[Journal]:
    """Every journal left in ``journal_dir``, oldest first; half-written journal temp files are discarded."""
    if not journal_dir.is_dir():
        return []
    for stale in journal_dir.glob(f"*{_SUFFIX}.tmp"):
        logger.warning("discarding half-written journal %s", stale)
        stale.unlink()
    found = sorted(journal_dir.glob(f"*{_SUFFIX}"), key=lambda p: p.stat().st_mtime_ns)
    return [_parse(path) for path in found]


def _parse(path: Path) -> Journal:
    try:
        body: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        if body.get("version") != _VERSION:
            raise ValueError(f"unknown journal version {body.get('version')!r}")
        files = tuple(JournalFile(**item) for item in body["files"])
        return Journal(body["txn_id"], body["kind"], body["deployment_id"], files, body["state"])
    except (ValueError, KeyError, TypeError) as exc:
        raise RecoveryError(
            f"the deploy journal {path} cannot be read ({exc}); inspect the files it names, then move it away"
        ) from exc
