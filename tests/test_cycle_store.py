"""Improvement cycles' records, on each backend: SQLite (embedded, the default) and PostgreSQL (several replicas on
one database; a real server, see :mod:`tests.postgres_server`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from generators.errors import CycleTakenOverError, IllegalTransitionError
from generators.improvement import CandidateRecord, CycleRecord, SqliteCycleStore
from generators.improvement.store import CycleStore
from generators.improvement.store_pg import PostgresCycleStore
from generators.pg_db import PostgresDatabase
from tests.postgres_server import postgres, two_stores  # noqa: F401 - the fixture


@pytest.fixture(params=["sqlite", "postgresql"])
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[CycleStore, CycleStore]]:
    """Two on one database (two replicas, or a restart)."""
    yield from two_stores(
        request, lambda: SqliteCycleStore(tmp_path / "c.sqlite3"), PostgresCycleStore, PostgresDatabase
    )


def cycle(cycle_id: str, started: float, status: str = "running") -> CycleRecord:
    return CycleRecord(cycle_id, "default", "local", "manual", status, started, started, {"max": 2})  # type: ignore[arg-type]


def test_a_stale_copy_of_a_candidate_cannot_undo_a_decision(stores: tuple[CycleStore, CycleStore]) -> None:
    """The held change was rejected (a fresh copy saved as rejected) while the cycle's own copy still said deploying:
    the cycle's save of pending_approval is refused, and the decision stays."""
    first, second = stores
    first.create(cycle("c1", 1.0))
    mine = CandidateRecord("c1", 0, "slow_stats", "latency_ms", "deploying", 1.0, "d1")
    first.save_candidate(mine)
    (fresh,) = second.by_status("deploying")
    fresh.status = "rejected"
    second.save_candidate(fresh, "deploying")  # the approver's rejection, on the copy it read (another replica)
    mine.status = "pending_approval"
    with pytest.raises(IllegalTransitionError, match="is rejected, not deploying"):
        first.save_candidate(mine, "deploying")  # the cycle's stale copy
    assert [c.status for c in first.by_status("rejected")] == ["rejected"]
    assert second.by_status("pending_approval") == []


def test_a_cycle_is_kept_with_its_candidates_and_what_it_left_out(stores: tuple[CycleStore, CycleStore]) -> None:
    first, second = stores
    for number in range(3):
        first.create(cycle(f"c{number}", 10.0 + number))
    first.save_candidate(CandidateRecord("c0", 1, "b", "m", "monitoring", 12.0, "d2", 99.0, {"note": "x"}))
    first.save_candidate(CandidateRecord("c0", 0, "a", "m", "kept", 11.0, "d1"))
    first.save_candidate(CandidateRecord("c1", 0, "a", "m", "queued", 11.0))
    first.set_left_out("c0", [{"component": "z", "reason": "no_module", "message": "none"}], 4)  # type: ignore[list-item]
    first.finish("c0", "completed", 20.0)
    second.finish("c0", "completed", 30.0)  # derived again later: the first end time stays
    second.finish("c2", "nothing_to_do", 21.0)
    got = second.get("c0")
    assert got is not None and (got.status, got.finished_at, got.updated_at, got.left_out_total) == (
        "completed", 20.0, 30.0, 4,
    )  # fmt: skip
    assert [(c.position, c.status, c.detail) for c in got.candidates] == [
        (0, "kept", {}),
        (1, "monitoring", {"note": "x"}),
    ]
    assert got.left_out[0]["component"] == "z" and got.params == {"max": 2}
    by_deployment = first.by_deployment("d2")
    assert by_deployment is not None and by_deployment.monitor_until == 99.0 and first.by_deployment("d9") is None
    active, more = second.active(limit=1)  # c1 runs; c0 has a change under watch; c2 is over
    assert [c.id for c in active] == ["c1"] and more
    assert [c.id for c in second.active(limit=5)[0]] == ["c1", "c0"]
    assert first.tallies() == {
        "cycles": {"completed": 1, "running": 1, "nothing_to_do": 1},
        "candidates": {"kept": 1, "monitoring": 1, "queued": 1},
    }
    # the first server stopped: its running cycle and its watched change want a new owner; exactly one takes each
    both = {first.owner, second.owner}
    assert second.orphans(both) == []
    orphans = second.orphans({second.owner})
    assert [(c.id, [k.status for k in c.candidates]) for c in orphans] == [("c0", ["kept", "monitoring"]),
                                                                          ("c1", ["queued"])]  # fmt: skip
    assert second.adopt("c1", {second.owner}) and second.adopt("c0", {second.owner})
    assert not first.adopt("c1", both)  # its owner is alive now
    assert second.orphans({second.owner}) == [] and [c.id for c in first.orphans({first.owner})] == ["c0", "c1"]
    assert second.interrupt("c1", 40.0) and not second.interrupt("c1", 41.0) and not second.interrupt("c0", 40.0)
    stopped = first.get("c1")
    assert stopped is not None and stopped.status == "interrupted" and stopped.candidates[0].status == "interrupted"
    assert first.by_status("monitoring")[0].cycle_id == "c0"  # a deployed change is left to its deployment
    assert second.get("nope") is None


def test_a_server_that_lost_its_cycle_starts_no_candidate_of_it(stores: tuple[CycleStore, CycleStore]) -> None:
    """The fence against a replica whose lease ended while it ran on: the replica that took the lease adopted and
    interrupted its cycle, so the old runner can neither add a candidate (it was still picking) nor move one it had
    begun (it was generating) towards a deployment, nor write its end over the take-over."""
    old, new = stores
    old.create(cycle("c1", 1.0))
    old.create(cycle("c2", 1.0))
    generating = CandidateRecord("c2", 0, "slow_stats", "latency_ms", "generating", 2.0)
    old.save_candidate(generating)
    for cycle_id in ("c1", "c2"):
        assert new.adopt(cycle_id, alive=[new.owner]) and new.interrupt(cycle_id, 3.0)
    with pytest.raises(CycleTakenOverError, match="c1 is interrupted, not running: another server took it over"):
        old.save_candidate(CandidateRecord("c1", 0, "slow_stats", "latency_ms", "queued", 4.0))
    generating.status = "deploying"
    with pytest.raises(IllegalTransitionError, match="is interrupted, not generating"):
        old.save_candidate(generating, "generating")
    old.finish("c1", "failed", 5.0, "its run ended")  # the old runner's end, written after the take-over
    c1, c2 = new.get("c1"), new.get("c2")
    assert c1 is not None and c1.status == "interrupted" and c1.candidates == []
    assert c2 is not None and [c.status for c in c2.candidates] == ["interrupted"]
