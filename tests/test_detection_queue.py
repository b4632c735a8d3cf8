"""The detection queue: stored batches judged after their ingest, in order, bounded, with a barrier for readers."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

import pytest

from telemetry.learning.live.detection_queue import DetectionQueue
from telemetry.store.records import EventRecord, MetricPoint


def batch(n: int, value: float = 1.0) -> list[MetricPoint]:
    return [MetricPoint("t", "m", float(n * 100 + i), value) for i in range(3)]


def event(points: Sequence[MetricPoint]) -> EventRecord:
    return EventRecord("t", points[0].timestamp, "anomaly", {"first": points[0].timestamp}, "detector", None)


class Gate:
    """A detector that judges a batch only when the test lets it, and records the order it saw them in."""

    def __init__(self) -> None:
        self.seen: list[float] = []
        self.entered = threading.Semaphore(0)
        self.go = threading.Semaphore(0)

    def __call__(self, points: Sequence[MetricPoint]) -> list[EventRecord]:
        self.entered.release()
        assert self.go.acquire(timeout=30), "the test never let the detector go on"
        self.seen.append(points[0].timestamp)
        return [event(points)]


def test_batches_are_judged_in_order_and_their_detections_recorded() -> None:
    recorded: list[EventRecord] = []
    queue = DetectionQueue(lambda points: [event(points)], recorded.extend)
    for n in range(50):
        queue.put(batch(n))
    assert queue.settled(timeout=30)
    assert [e.detail["first"] for e in recorded] == [float(n * 100) for n in range(50)]
    assert queue.pending == 0
    queue.close()


def test_settled_waits_for_a_batch_being_judged() -> None:
    gate = Gate()
    queue = DetectionQueue(gate, lambda found: None)
    queue.put(batch(1))
    assert gate.entered.acquire(timeout=30)  # the batch is being judged, held by the gate
    assert not queue.settled(timeout=0.05)  # a reader would wait for it
    gate.go.release()
    assert queue.settled(timeout=30)
    assert gate.seen == [100.0]
    queue.close()


def test_settled_does_not_wait_for_batches_put_after_it() -> None:
    """Batches keep coming (each judged batch puts the next, so the queue is never empty): a reader still gets on."""
    stop = threading.Event()
    queue: DetectionQueue

    def chain(points: Sequence[MetricPoint]) -> list[EventRecord]:
        if not stop.is_set():
            queue.put(batch(int(points[0].timestamp // 100) + 1))
        return []

    queue = DetectionQueue(chain, lambda found: None)
    queue.put(batch(1))
    try:
        assert queue.settled(timeout=30)  # waiting for an empty queue would never end
    finally:
        stop.set()
    assert queue.settled(timeout=30)
    queue.close()


def test_a_full_queue_makes_the_next_ingest_wait_instead_of_dropping() -> None:
    gate = Gate()
    queue = DetectionQueue(gate, lambda found: None, max_points=6)  # two batches of 3 points
    queue.put(batch(1))
    assert gate.entered.acquire(timeout=30)  # batch 1 is being judged (still counted as waiting)
    queue.put(batch(2))  # the queue is now full
    third_put = threading.Event()

    def put_third() -> None:
        queue.put(batch(3))
        third_put.set()

    putter = threading.Thread(target=put_third)
    putter.start()
    assert not third_put.wait(0.2)  # waits for room
    gate.go.release()  # batch 1 judged: room for batch 3
    assert third_put.wait(30)
    for _ in range(2):
        assert gate.entered.acquire(timeout=30)
        gate.go.release()
    assert queue.settled(timeout=30)
    assert gate.seen == [100.0, 200.0, 300.0]  # nothing dropped, order kept
    putter.join(30)
    queue.close()


def test_a_failing_batch_is_logged_and_the_next_ones_are_still_judged(caplog: pytest.LogCaptureFixture) -> None:
    recorded: list[EventRecord] = []

    def detect(points: Sequence[MetricPoint]) -> list[EventRecord]:
        if points[0].timestamp == 200.0:
            raise RuntimeError("detector broke")
        return [event(points)]

    queue = DetectionQueue(detect, recorded.extend)
    with caplog.at_level(logging.ERROR):
        for n in (1, 2, 3):
            queue.put(batch(n))
        assert queue.settled(timeout=30)
    assert [e.detail["first"] for e in recorded] == [100.0, 300.0]
    assert queue.failures == 1
    assert "anomaly detection failed for a batch of 3 points" in caplog.text
    queue.close()


def test_close_judges_what_is_queued_and_later_puts_are_refused() -> None:
    recorded: list[EventRecord] = []
    release = threading.Event()

    def slow(points: Sequence[MetricPoint]) -> list[EventRecord]:
        release.wait(30)
        return [event(points)]

    queue = DetectionQueue(slow, recorded.extend)
    for n in range(5):
        queue.put(batch(n))
    release.set()
    queue.close()
    assert len(recorded) == 5
    with pytest.raises(RuntimeError, match="closed"):
        queue.put(batch(9))


def test_a_batch_larger_than_the_bound_is_taken_when_the_queue_is_empty() -> None:
    recorded: list[EventRecord] = []
    queue = DetectionQueue(lambda points: [event(points)], recorded.extend, max_points=2)
    queue.put(batch(1))  # 3 points: more than the bound, but nothing waits before it
    queue.put(batch(2))  # waits for batch 1, then goes in
    assert queue.settled(timeout=30)
    assert [e.detail["first"] for e in recorded] == [100.0, 200.0]
    queue.close()


def test_empty_batches_are_not_queued_and_max_points_must_be_positive() -> None:
    queue = DetectionQueue(lambda points: pytest.fail("an empty batch reached the detector"), lambda found: None)
    queue.put([])
    assert queue.pending == 0
    assert queue.settled(timeout=0)
    queue.close()
    with pytest.raises(ValueError, match="max_points"):
        DetectionQueue(lambda points: [], lambda found: None, max_points=0)
