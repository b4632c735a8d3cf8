"""Faults from AWS: throttling is retried with backoff and then shows in the source's health and breaker;
errors that another try cannot fix (auth, validation) are not retried.

A local HTTP server stands in for CloudWatch and CloudWatch Logs and answers every call with one error, so the
requests it receives are exactly the tries made (botocore's own retries are off: ours are the only layer).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from telemetry.cloudwatch.config import CloudWatchConfig, MetricWatch
from telemetry.cloudwatch.streamer import CloudWatchStreamer, SourceHealth, SourceName
from telemetry.store.sqlite_store import SqliteTelemetryStore
from tests.conftest import ServerFactory, call, connect
from tests.moto_server import CREDENTIALS, FaultServer
from tests.polling import eventually

pytestmark = pytest.mark.anyio

ATTEMPTS = 3
# Each source with what it watches, and the API call its poll makes first.
SOURCES: dict[SourceName, tuple[dict[str, Any], str]] = {
    "cloudwatch.logs": ({"log_groups": ["/app/api"]}, "Logs_20140328.FilterLogEvents"),
    "cloudwatch.metrics": (
        {"metrics": [MetricWatch(namespace="Shop", metric_name="Latency", dimensions={"Component": "api"})]},
        "GraniteServiceVersion20100801.GetMetricData",
    ),
}


@pytest.fixture(autouse=True)
def credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Dummy credentials (requests are signed), and no endpoint or profile from the developer's environment."""
    for key, value in CREDENTIALS.items():
        monkeypatch.setenv(key, value)
    for key in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_MAX_ATTEMPTS", "AWS_RETRY_MODE"):
        monkeypatch.delenv(key, raising=False)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteTelemetryStore]:
    db = SqliteTelemetryStore(tmp_path / "t.db")
    yield db
    db.close()


def config(fault: FaultServer, source: SourceName, **overrides: Any) -> CloudWatchConfig:
    values: dict[str, Any] = {
        "endpoint_url": fault.url,
        "retry_attempts": ATTEMPTS,
        "retry_initial_seconds": 0.001,
        "breaker_failure_threshold": 2,
        "breaker_cooldown_seconds": 600,
        **SOURCES[source][0],
        **overrides,
    }
    return CloudWatchConfig.model_validate(values)


def health(streamer: CloudWatchStreamer, source: SourceName) -> SourceHealth:
    return {h.name: h for h in streamer.health()}[source]


@pytest.mark.parametrize("source", list(SOURCES))
async def test_throttling_is_retried_then_shows_in_health_and_opens_the_breaker(
    source: SourceName, store: SqliteTelemetryStore
) -> None:
    with FaultServer(400, "ThrottlingException", "Rate exceeded") as fault:
        streamer = CloudWatchStreamer(config(fault, source), store)

        assert await streamer.poll(source) == 0
        assert fault.requests == [SOURCES[source][1]] * ATTEMPTS  # one call, tried retry_attempts times
        first = health(streamer, source)
        assert first.last_error == "ThrottlingException: Rate exceeded"
        assert (first.polls, first.failures, first.last_success, first.items_ingested) == (1, 1, None, 0)
        assert first.breaker is not None
        assert (first.breaker.state, first.breaker.consecutive_failures) == ("closed", 1)

        await streamer.poll(source)
        assert fault.count == 2 * ATTEMPTS
        opened = health(streamer, source)
        assert opened.breaker is not None and opened.breaker.state == "open"
        assert opened.breaker.consecutive_failures == 2 and opened.failures == 2
        assert opened.breaker.retry_at is not None and opened.last_error_at is not None

        # While open, polls send nothing to AWS.
        assert await streamer.poll(source) == 0
        assert fault.count == 2 * ATTEMPTS and health(streamer, source).polls == 2


async def test_retries_back_off_exponentially(store: SqliteTelemetryStore) -> None:
    with FaultServer(400, "ThrottlingException") as fault:
        streamer = CloudWatchStreamer(config(fault, "cloudwatch.logs", retry_initial_seconds=0.05), store)
        await streamer.poll("cloudwatch.logs")
    first, second, third = fault.times
    # Waits of initial * 2**n plus up to ``initial`` of jitter: at least 0.05 s, then at least 0.1 s.
    assert second - first >= 0.05 and third - second >= 0.1


@pytest.mark.parametrize(
    ("status", "code", "tries"),
    [
        (400, "AccessDeniedException", 1),
        (400, "ValidationException", 1),
        (400, "UnrecognizedClientException", 1),
        (400, "ResourceNotFoundException", 1),
        (429, "RateLimited", ATTEMPTS),  # 429 is throttling, whatever its code
        (503, "ServiceUnavailableException", ATTEMPTS),
        (500, "SomethingBroke", ATTEMPTS),  # any 5xx is transient, whatever its code
    ],
)
@pytest.mark.parametrize("source", list(SOURCES))
async def test_only_transient_errors_are_retried(
    source: SourceName, status: int, code: str, tries: int, store: SqliteTelemetryStore
) -> None:
    with FaultServer(status, code, "no") as fault:
        streamer = CloudWatchStreamer(config(fault, source), store)
        await streamer.poll(source)
        assert fault.count == tries
    after = health(streamer, source)
    assert after.last_error == f"{code}: no" and after.failures == 1


async def test_throttled_source_is_visible_through_get_telemetry_sources(make_server: ServerFactory) -> None:
    with FaultServer(400, "ThrottlingException", "Rate exceeded") as fault:
        cw_config = config(fault, "cloudwatch.logs", poll_interval_seconds=0.02)
        async with connect(make_server(enable_cloudwatch_streaming=True, cloudwatch=cw_config)) as mcp:
            sources: dict[str, Any] = {}

            async def opened() -> bool:
                sources.update({s["name"]: s for s in (await call(mcp, "get_telemetry_sources"))["sources"]})
                return bool(sources["cloudwatch.logs"]["breaker"]["state"] == "open")

            await eventually(opened, "the logs source's breaker opened", timeout=20)
            logs = sources["cloudwatch.logs"]
            assert logs["enabled"] is True and logs["last_error"] == "ThrottlingException: Rate exceeded"
            assert logs["failures"] == 2 and logs["breaker"]["consecutive_failures"] == 2
            assert logs["last_success"] is None and logs["items_ingested"] == 0
            assert fault.count == 2 * ATTEMPTS
            assert sources["cloudwatch.metrics"]["enabled"] is False and sources["cloudwatch.metrics"]["polls"] == 0
            status = await call(mcp, "get_system_status")
            [reported] = [s for s in status["telemetry_sources"] if s["name"] == "cloudwatch.logs"]
            assert reported["breaker"]["state"] == "open"
