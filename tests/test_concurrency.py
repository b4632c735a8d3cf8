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
            for _ in range(3):
                group.start_soon(call, client, "query_telemetry_insights", {"tenant_id": "default"})
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
