"""One machine, many clients: heavy analyses take turns in worker threads of their own (at most
``analysis_max_concurrency`` at once), and an ingest or a status query never waits for them."""

from __future__ import annotations

import threading
import time
from typing import Any

import anyio
import pytest

from telemetry.learning.engine import LearningEngine
from tests.conftest import ServerFactory, call, connect

pytestmark = pytest.mark.anyio


async def test_analyses_take_turns_and_an_ingest_never_waits_for_them(
    make_server: ServerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    inside: list[int] = []  # analyses that have started
    started = threading.Semaphore(0)
    release = threading.Event()
    original = LearningEngine.analyze

    def held(self: LearningEngine, *args: Any, **kwargs: Any) -> Any:
        inside.append(threading.get_ident())
        started.release()
        release.wait(timeout=60)  # a long analysis, until the test lets it end
        return original(self, *args, **kwargs)

    monkeypatch.setattr(LearningEngine, "analyze", held)
    server = make_server(analysis_max_concurrency=1)
    async with connect(server) as client, anyio.create_task_group() as group:
        try:
            for hours in (24, 25, 26):  # three different questions (identical ones would share a run, below)
                group.start_soon(call, client, "query_telemetry_insights", {"time_range_hours": hours})
            with anyio.fail_after(30):
                await anyio.to_thread.run_sync(started.acquire)  # the first analysis runs (and holds its turn)
                point = {"name": "latency_ms", "value": 1.0, "timestamp": time.time()}
                ingested = await call(client, "ingest_telemetry", {"tenant_id": "default", "metrics": [point]})
                status = await call(client, "get_system_status")
            assert ingested["accepted"]["metrics"] == 1 and status["server"]  # neither waited for the analysis
            assert len(inside) == 1, "the other analyses wait their turn"
        finally:
            release.set()
    assert len(inside) == 3  # each ran, in turn


async def test_identical_questions_waiting_at_once_share_one_analysis_that_starts_after_they_came(
    make_server: ServerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    windows: list[float] = []  # each analysis run, by its window
    started = threading.Semaphore(0)
    release = {24.0: threading.Event(), 48.0: threading.Event()}
    original = LearningEngine.analyze

    def held(self: LearningEngine, tenant: str, *, window_hours: float, **kwargs: Any) -> Any:
        windows.append(window_hours)
        started.release()
        release[window_hours].wait(timeout=60)
        return original(self, tenant, window_hours=window_hours, **kwargs)

    monkeypatch.setattr(LearningEngine, "analyze", held)
    point = {"name": "latency_ms", "value": 1.0, "timestamp": time.time()}
    async with connect(make_server(analysis_max_concurrency=1)) as client, anyio.create_task_group() as group:
        answers: list[dict[str, Any]] = []

        async def ask(hours: float) -> None:
            answers.append(await call(client, "query_telemetry_insights", {"time_range_hours": hours}))

        try:
            group.start_soon(ask, 24.0)  # holds the one slot
            with anyio.fail_after(30):
                await anyio.to_thread.run_sync(started.acquire)
            for _ in range(3):  # the same question three times, all waiting for the slot
                group.start_soon(ask, 48.0)
            await call(client, "ingest_telemetry", {"tenant_id": "default", "metrics": [point]})  # before the run
            release[24.0].set()
            with anyio.fail_after(30):
                await anyio.to_thread.run_sync(started.acquire)  # the 48 h run starts, after all three came
            assert windows == [24.0, 48.0]
        finally:
            release[24.0].set()
            release[48.0].set()
    assert windows == [24.0, 48.0], "one analysis answered the three identical questions"
    assert len(answers) == 4
    shared = [a for a in answers if a["time_range_hours"] == 48.0]
    assert len(shared) == 3 and all(a["summary"] == shared[0]["summary"] for a in shared)
    assert shared[0]["summary"]["series_analysed"] >= 1, "the point ingested while they waited is in their answer"
