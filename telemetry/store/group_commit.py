"""Group commit: batches that arrive while another is being written go into the next transaction together."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(eq=False, slots=True)
class _Batch(Generic[T]):
    items: Sequence[T]
    done: bool = False
    error: BaseException | None = None


class GroupCommit(Generic[T]):
    """Runs ``write`` for the batches callers submit, one writer at a time; the batches that queued up meanwhile are
    written by the next writer in one call (one transaction), in the order they came.

    A store with one writing connection needs it: every statement lets go of the GIL, and while other threads run
    Python the writer waits for it again at each one, so under load most of a write transaction is waiting — paid
    once per transaction. 16 clients pushing at once then cost a few transactions, not 16 in a row.

    Each submitter returns once its batch is committed (or raises what its batch raised): if a group's write fails,
    its batches are written again one by one, so one batch's failure is never another's. ``write`` must be
    all-or-nothing (a transaction) and give the same result for the concatenated batches as for them one after another.
    """

    def __init__(self, write: Callable[[Sequence[T]], object]) -> None:
        self._write = write
        self._changed = threading.Condition()  # guards _pending and _writing; told when a group is written
        self._pending: list[_Batch[T]] = []
        self._writing = False

    def submit(self, items: Sequence[T]) -> None:
        mine = _Batch(items)
        with self._changed:
            self._pending.append(mine)
            while self._writing and not mine.done:
                self._changed.wait()
            group: list[_Batch[T]] = []
            if not mine.done:  # nobody is writing: this caller writes what is pending, its batch included
                self._writing = True
                group, self._pending = self._pending, []
        if group:
            try:
                self._write_group(group)
            finally:
                with self._changed:
                    self._writing = False
                    self._changed.notify_all()
        if mine.error is not None:
            raise mine.error

    def _write_group(self, group: list[_Batch[T]]) -> None:
        try:
            if len(group) > 1:
                try:
                    self._write([item for batch in group for item in batch.items])
                except Exception as exc:
                    logger.debug("a group of %d batches failed (%s); writing them one by one", len(group), exc)
                else:
                    for batch in group:
                        batch.done = True
                    return
            for batch in group:
                try:
                    self._write(batch.items)
                except Exception as exc:  # the batch's own caller raises it
                    batch.error = exc
                batch.done = True
        except BaseException as exc:  # interrupted: no batch of the group may pass for written
            for batch in group:
                if not batch.done:
                    batch.error, batch.done = exc, True
            raise
