"""Atomic multi-file writes into the workspace, journaled so a crash leaves every file all-old or all-new.

Order of a transaction: (1) the journal is written and fsynced; (2) every new content goes to a temp file beside its
target and is fsynced; (3) only then are targets replaced (``os.replace``) or deleted, and their folders fsynced;
(4) the journal is marked committed. Because no target is touched before every temp file is complete, after a crash
the transaction can always be finished when all temp files hash right, and needs no undo of targets otherwise.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal

from generators.deploy.journal import Journal, JournalFile, TxnKind, fsync_dir, remove_journal, write_journal
from generators.deploy.models import sha256_hex
from generators.errors import DeployError, RecoveryError, UnsafePathError

logger = logging.getLogger(__name__)

# Called after each step ("journaled", "temp_written", "replaced", "deleted", "committed") with the file's path
# ("" for whole-transaction steps). Tests use it to stop a real process at a chosen point.
StepHook = Callable[[str, str], None]
Outcome = Literal["forward", "back"]
NEW_FILE_MODE = 0o644


@dataclass(frozen=True, slots=True)
class Write:
    """One file of a transaction: ``content`` ``None`` deletes it; ``old_sha256`` ``None`` means it must not exist."""

    path: str
    old_sha256: str | None
    content: bytes | None


def target_path(workspace: Path, rel: str) -> Path:
    """The absolute path of ``rel`` in ``workspace``, refusing anything but a plain file path inside it."""
    shown = repr(rel) if len(rel) <= 120 else repr(rel[:117] + "...")
    pure = PurePosixPath(rel)
    if not rel or "\\" in rel or "\0" in rel or pure.is_absolute() or str(pure) != rel:
        raise UnsafePathError(f"path {shown} must be a normalised relative POSIX path like 'components/x.py'")
    if ".." in pure.parts or ".git" in pure.parts:
        raise UnsafePathError(f"path {shown} must not contain '..' or '.git'")
    root = workspace.resolve()
    target = root.joinpath(*pure.parts)
    if not target.parent.resolve().is_relative_to(root):
        raise UnsafePathError(f"path {shown} leads outside the workspace {root} through a symlinked folder")
    if target.is_symlink():
        raise UnsafePathError(f"path {shown} is a symlink; replace it with a regular file or choose another path")
    if target.exists() and not target.is_file():
        raise UnsafePathError(f"path {shown} exists and is not a regular file")
    return target


def file_sha256(path: Path) -> str | None:
    """The sha256 of the file at ``path``, or ``None`` if there is none."""
    try:
        return sha256_hex(path.read_bytes())
    except FileNotFoundError:
        return None


def run(
    workspace: Path,
    journal_dir: Path,
    txn_id: str,
    kind: TxnKind,
    deployment_id: str,
    writes: Sequence[Write],
    hook: StepHook | None = None,
) -> Journal:
    """Apply ``writes`` as one transaction; return the committed journal (the caller removes it when done).

    Raises:
        UnsafePathError: a path is not a plain file inside the workspace (nothing was touched).
        DeployError: writing failed; the workspace was returned to its old state and the journal removed.
    """
    step = hook or _no_hook
    targets = {w.path: target_path(workspace, w.path) for w in writes}
    files = tuple(
        JournalFile(
            w.path,
            w.old_sha256,
            None if w.content is None else sha256_hex(w.content),
            None if w.content is None else _temp_rel(w.path, txn_id),
        )
        for w in writes
    )
    journal = Journal(txn_id, kind, deployment_id, files)
    write_journal(journal_dir, journal)
    step("journaled", "")
    try:
        for w, f in zip(writes, files, strict=True):
            if w.content is not None and f.temp is not None:
                _write_temp(workspace / f.temp, targets[w.path], w.content)
                step("temp_written", w.path)
        _replace_all(workspace, files, step)
    except OSError as exc:
        outcome = resolve(workspace, journal_dir, journal)
        if outcome == "back":
            remove_journal(journal_dir, txn_id)
            raise DeployError(
                f"writing the workspace failed ({exc.strerror or exc}: {exc.filename}); no file was changed. "
                "Check that the workspace is writable and has free space, then retry."
            ) from exc
        logger.warning("transaction %s hit %s but every new file was ready; it was completed", txn_id, exc)
        return journal.committed()
    committed = journal.committed()
    write_journal(journal_dir, committed)
    step("committed", "")
    return committed


def resolve(workspace: Path, journal_dir: Path, journal: Journal) -> Outcome:
    """Finish (``"forward"``) or undo (``"back"``) an interrupted transaction; a committed one is only tidied.

    Forward when every new file's temp file hashes right or its target already holds the new bytes; back otherwise
    (then no target was touched yet, which is checked). The journal is left for the caller to remove.

    Raises:
        RecoveryError: the files match neither outcome (changed by someone else meanwhile); nothing is changed.
    """
    if journal.state == "committed":
        _remove_temps(workspace, journal)
        return "forward"
    if all(_ready(workspace, f) for f in journal.files):
        _replace_all(workspace, journal.files, _no_hook, recovering=True)
        write_journal(journal_dir, journal.committed())
        return "forward"
    changed = [f.path for f in journal.files if file_sha256(workspace / f.path) != f.old_sha256]
    if changed:
        raise RecoveryError(
            f"transaction {journal.txn_id} ({journal.kind} of deployment {journal.deployment_id}) was interrupted "
            f"and cannot be finished or undone: {changed} hold neither the old content nor a complete new one. "
            f"Inspect these files, then remove {journal_dir}/{journal.txn_id}.journal.json"
        )
    _remove_temps(workspace, journal)
    return "back"


def _ready(workspace: Path, f: JournalFile) -> bool:
    if f.new_sha256 is None or f.temp is None:
        return True
    return file_sha256(workspace / f.temp) == f.new_sha256 or file_sha256(workspace / f.path) == f.new_sha256


def _replace_all(workspace: Path, files: Sequence[JournalFile], step: StepHook, *, recovering: bool = False) -> None:
    folders: set[Path] = set()
    for f in files:
        target = workspace / f.path
        if f.temp is None:
            with suppress(FileNotFoundError):
                target.unlink()
            step("deleted", f.path)
        elif not recovering or file_sha256(workspace / f.temp) == f.new_sha256:
            os.replace(workspace / f.temp, target)
            step("replaced", f.path)
        folders.add(target.parent)
    for folder in sorted(folders):
        fsync_dir(folder)


def _write_temp(temp: Path, target: Path, content: bytes) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = stat.S_IMODE(target.stat().st_mode)
    except FileNotFoundError:
        mode = NEW_FILE_MODE
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(content)
        handle.flush()
        os.chmod(temp, mode)
        os.fsync(handle.fileno())


def _remove_temps(workspace: Path, journal: Journal) -> None:
    for f in journal.files:
        if f.temp is not None:
            with suppress(FileNotFoundError):
                (workspace / f.temp).unlink()


def _temp_rel(rel: str, txn_id: str) -> str:
    pure = PurePosixPath(rel)
    return str(pure.with_name(f".{pure.name}.{sha256_hex(txn_id.encode())[:12]}.deploy-tmp"))


def _no_hook(step: str, path: str) -> None:
    return None
