"""Bounded retention: prune telemetry older than the retention window, at start-up and then periodically."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import anyio
import anyio.to_thread

from telemetry.clock import Clock, sleep
from telemetry.errors import StorageFullError
from telemetry.store.records import TelemetryStore

logger = logging.getLogger(__name__)


async def prune_once(store: TelemetryStore, retention_seconds: float, clock: Callable[[], float] = time.time) -> int:
    """Delete what is older than the retention window; failures are logged (and retried next time), not raised."""
    try:
        removed = await anyio.to_thread.run_sync(lambda: store.prune(older_than=clock() - retention_seconds))
    except StorageFullError:  # even a delete needs room in the WAL; the store logs the episode, this retries later
        return 0
    except Exception:
        logger.exception("telemetry pruning failed")
        return 0
    if removed:
        logger.info("pruned %d telemetry rows older than %.1f days", removed, retention_seconds / 86400)
    return removed


async def prune_forever(
    store: TelemetryStore, retention_seconds: float, *, clock: Clock, interval: float = 3600.0
) -> None:
    """Prune every ``interval`` seconds of ``clock`` until cancelled."""
    while True:
        await sleep(clock, interval)
        await prune_once(store, retention_seconds, clock)
