"""The server's own folder for sandbox copies (tests, types, bandit, benchmarks), and the removal of what a killed
predecessor left there.

Layout of the parent (``<data_dir>/sandbox-scratch``, one per data directory)::

    <pid>-<random>/        one process's folder: every TemporaryDirectory of the validation stages goes in here
    <pid>-<random>.lock    flock()ed by that process for as long as it lives

The kernel drops a process's ``flock`` when it dies, SIGKILL included, so a lock that can be taken means its owner is
gone: :meth:`ScratchArea.open` removes such folders (and folders without a lock file), never one whose lock is held,
whichever server of the same data directory holds it. Start-ups take ``.cleanup.lock`` in turn, so none sees another's
folder before its lock exists. Where ``flock`` is missing (Windows) nothing of another process is removed.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: no locks, so no removal of other processes' folders
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger(__name__)

SCRATCH_FOLDER = "sandbox-scratch"  # also skipped when a workspace that holds the data directory is copied
_LOCK_SUFFIX = ".lock"
_CLEANUP_LOCK = ".cleanup.lock"


class ScratchArea:
    """One process's folder under a shared parent; :meth:`open` it at start-up, :meth:`close` it at shutdown."""

    def __init__(self, path: Path, lock_fd: int | None) -> None:
        self.path = path
        self._lock_fd = lock_fd

    @classmethod
    def open(cls, parent: Path) -> ScratchArea:
        """Make this process's folder under ``parent`` and remove the folders of processes that are gone."""
        parent.mkdir(parents=True, exist_ok=True)
        name = f"{os.getpid()}-{secrets.token_hex(4)}"
        with _exclusive(parent / _CLEANUP_LOCK):
            # os.open's descriptors are not inherited (PEP 446): a test or mypy process outliving the server does
            # not keep its lock alive.
            fd = os.open(parent / f"{name}{_LOCK_SUFFIX}", os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                if fcntl is not None:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                (parent / name).mkdir(mode=0o700)
            except BaseException:
                os.close(fd)
                raise
            removed = _remove_abandoned(parent, keep=name)
        if removed:
            logger.info("removed %d sandbox folder(s) that stopped servers left in %s", removed, parent)
        return cls(parent / name, fd)

    def close(self) -> None:
        """Remove this process's folder and release its lock."""
        shutil.rmtree(self.path, ignore_errors=True)
        if self._lock_fd is not None:
            with suppress(FileNotFoundError):
                self.path.with_name(self.path.name + _LOCK_SUFFIX).unlink()
            os.close(self._lock_fd)
            self._lock_fd = None


@contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    """``path`` flock()ed exclusively (waiting for it) for the block."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing drops the lock


def _owner_gone(lock: Path) -> int | None:
    """An fd holding ``lock`` when its owner is gone (the caller closes it); ``None`` while the owner lives."""
    if fcntl is None:
        return None
    try:
        fd = os.open(lock, os.O_RDWR)
    except FileNotFoundError:
        return -1  # no lock file at all: nobody can own the folder
    except OSError:
        return None  # cannot tell (not ours to open): leave it
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def _remove_abandoned(parent: Path, keep: str) -> int:
    """Remove the folders (and lock files) under ``parent`` whose owner is gone; return how many folders went."""
    removed = 0
    for entry in sorted(parent.iterdir()):
        if entry.name in (keep, keep + _LOCK_SUFFIX, _CLEANUP_LOCK) or entry.is_symlink():
            continue
        is_lock = entry.name.endswith(_LOCK_SUFFIX)
        folder = entry.with_name(entry.name.removesuffix(_LOCK_SUFFIX)) if is_lock else entry
        if (is_lock and folder.is_dir()) or not (is_lock or entry.is_dir()):
            continue  # a lock is handled with its folder; a stray file is not ours to judge
        fd = _owner_gone(folder.with_name(folder.name + _LOCK_SUFFIX))
        if fd is None:
            continue
        try:
            if folder.is_dir():
                shutil.rmtree(folder, ignore_errors=True)
                if folder.exists():
                    logger.warning("could not remove all of the abandoned sandbox folder %s", folder)
                removed += 1
            with suppress(FileNotFoundError):
                folder.with_name(folder.name + _LOCK_SUFFIX).unlink()
        finally:
            if fd >= 0:
                os.close(fd)
    return removed
