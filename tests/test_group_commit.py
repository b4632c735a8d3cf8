"""Group commit: batches that queue up behind a write go into the next one together, and fail only for themselves."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import pytest

from telemetry.store.group_commit import GroupCommit
from tests.polling import eventually_sync


class Writes:
    """A write function that records its calls; the first call can be held until released, and items marked "bad"
    make a call fail."""

    def __init__(self, *, hold_first: bool = False, fail_with: type[BaseException] = ValueError) -> None:
        self.calls: list[list[str]] = []
        self.entered = threading.Event()
        self.release = threading.Event()
        if not hold_first:
            self.release.set()
        self.fail_with = fail_with

    def __call__(self, items: Sequence[str]) -> None:
        first = not self.entered.is_set()
        self.entered.set()
        if first:
            self.release.wait(timeout=60)
        if "bad" in items:
            raise self.fail_with(f"bad item in {list(items)}")
        self.calls.append(list(items))


def submit_in_thread(group: GroupCommit[str], items: list[str], outcome: dict[str, object]) -> threading.Thread:
    def run() -> None:
        try:
            group.submit(items)
            outcome[items[0]] = "ok"
        except BaseException as exc:  # what the submitter sees, whatever it is
            outcome[items[0]] = exc

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def queued(group: GroupCommit[str], count: int) -> bool:
    return len(group._pending) == count


def test_batches_that_wait_behind_a_write_are_written_together_in_order() -> None:
    writes = Writes(hold_first=True)
    group = GroupCommit(writes)
    outcome: dict[str, object] = {}
    first = submit_in_thread(group, ["a1", "a2"], outcome)
    assert writes.entered.wait(timeout=60)
    others = [submit_in_thread(group, [f"{name}1", f"{name}2"], outcome) for name in "bcd"]
    eventually_sync(lambda: queued(group, 3), "three batches wait behind the first write")
    assert outcome == {}  # nobody returns before their batch is written
    writes.release.set()
    for thread in [first, *others]:
        thread.join(timeout=60)
    assert outcome == {"a1": "ok", "b1": "ok", "c1": "ok", "d1": "ok"}
    assert writes.calls[0] == ["a1", "a2"]
    assert len(writes.calls) == 2 and sorted(writes.calls[1][::2]) == ["b1", "c1", "d1"]  # one write for the three
    for i in range(0, 6, 2):  # each batch kept whole and in its own order
        assert writes.calls[1][i][0] == writes.calls[1][i + 1][0] and writes.calls[1][i + 1].endswith("2")


def test_a_failing_batch_fails_alone_when_its_group_is_written_again_one_by_one() -> None:
    writes = Writes(hold_first=True)
    group = GroupCommit(writes)
    outcome: dict[str, object] = {}
    first = submit_in_thread(group, ["a"], outcome)
    assert writes.entered.wait(timeout=60)
    others = [submit_in_thread(group, items, outcome) for items in (["b"], ["c", "bad"], ["d"])]
    eventually_sync(lambda: queued(group, 3), "three batches wait behind the first write")
    writes.release.set()
    for thread in [first, *others]:
        thread.join(timeout=60)
    assert outcome["a"] == outcome["b"] == outcome["d"] == "ok"
    assert isinstance(outcome["c"], ValueError)
    assert sorted(call[0] for call in writes.calls[1:]) == ["b", "d"]  # written alone after the group failed


def test_an_interrupted_group_write_fails_every_batch_of_it() -> None:
    """A BaseException (not retried) must not leave a waiting batch passing for written."""
    writes = Writes(hold_first=True, fail_with=KeyboardInterrupt)
    group = GroupCommit(writes)
    outcome: dict[str, object] = {}
    first = submit_in_thread(group, ["a"], outcome)
    assert writes.entered.wait(timeout=60)
    others = [submit_in_thread(group, items, outcome) for items in (["b"], ["c", "bad"])]
    eventually_sync(lambda: queued(group, 2), "two batches wait behind the first write")
    writes.release.set()
    for thread in [first, *others]:
        thread.join(timeout=60)
    assert outcome["a"] == "ok"
    assert isinstance(outcome["b"], KeyboardInterrupt) and isinstance(outcome["c"], KeyboardInterrupt)
    group.submit(["e"])  # the writer's turn was given back
    assert writes.calls[-1] == ["e"]


def test_one_batch_alone_is_written_at_once_and_raises_its_own_error() -> None:
    writes = Writes()
    group = GroupCommit(writes)
    group.submit(["x"])
    with pytest.raises(ValueError, match="bad item"):
        group.submit(["bad"])
    assert writes.calls == [["x"]]
