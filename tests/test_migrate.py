"""``self-building-mcp migrate --to postgresql://…``: a server's SQLite data directory moved into an empty PostgreSQL
database by the real command; the server then runs on PostgreSQL with everything it had (telemetry, deployments,
the audit log, a generated tool it serves), writes new records after the copied ones, and a second move into the
same database is refused (a real PostgreSQL, see :mod:`tests.postgres_server`)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from pydantic import SecretStr

from server.settings import Settings
from tests.conftest import call, connect
from tests.fakes import FakeHostSource
from tests.llm_server import ScriptedLLM
from tests.postgres_server import PostgresServer, postgres  # noqa: F401 - the fixture
from tests.test_generated_tools import ARGS, NAME, REPLY
from tests.test_generation_tool import build
from tests.test_transports import server_env

pytestmark = pytest.mark.anyio


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """SQLite whatever ``--backend`` says: these tests are about the server's SQLite files."""
    return settings.model_copy(update={"database_url": None})


def run_migrate(tmp_path: Path, settings: Settings, url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "server", "migrate", "--data-dir", str(settings.data_dir), "--to", url],
        env=server_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


async def test_a_data_directory_moves_to_postgresql_with_everything_it_had(
    tmp_path: Path,
    settings: Settings,
    host: FakeHostSource,
    scripted_llm: ScriptedLLM,
    postgres: PostgresServer,  # noqa: F811
) -> None:
    scripted_llm.reply(REPLY)
    now = time.time()
    metrics = [{"name": "latency_ms", "value": 100.0 + i % 7, "timestamp": now - 3600 + i * 30,
                "dimensions": {"Component": "api"}} for i in range(120)]  # fmt: skip
    logs = [{"message": f"upstream timed out after {i} ms", "level": "ERROR", "timestamp": now - i} for i in range(5)]
    events = [{"type": "deployment", "detail": {"version": "1.2"}, "id": "dep-1", "timestamp": now - 60}]
    async with connect(build(settings, host, scripted_llm)) as client:  # on SQLite, as it runs today
        await call(client, "ingest_telemetry", {"tenant_id": "acme", "metrics": metrics, "logs": logs,
                                                "events": events})  # fmt: skip
        made = await call(client, "generate_component", ARGS)
        assert made["succeeded"], made["validation_text"]
        assert (await call(client, NAME, {"text": "1h30m"})) == {"seconds": 5400}
        before_insights = await call(client, "query_telemetry_insights", {"tenant_id": "acme", "time_range_hours": 2})
        before_audit = (await call(client, "query_audit_log", {"limit": 100}))["entries"]
        before_deployments = (await call(client, "list_deployments", {}))["deployments"]

    url = postgres.new_database()
    moved = run_migrate(tmp_path, settings, url)
    assert moved.returncode == 0, moved.stderr
    assert "telemetry.sqlite3: points: 120 rows" in moved.stdout
    assert "audit.sqlite3: audit_log:" in moved.stdout and "moved " in moved.stdout.splitlines()[-1]
    files = {path.name for path in settings.data_dir.glob("*.sqlite3")}
    assert len(files) >= 8 and all(f"{name}: " in moved.stdout for name in files), (files, moved.stdout)

    on_pg = settings.model_copy(update={"data_dir": settings.data_dir.parent / "pg", "database_url": SecretStr(url)})
    async with connect(build(on_pg, host, scripted_llm)) as client:
        insights = await call(client, "query_telemetry_insights", {"tenant_id": "acme", "time_range_hours": 2})
        assert insights["summary"] == before_insights["summary"]
        assert (await call(client, "list_deployments", {}))["deployments"] == before_deployments
        audit = (await call(client, "query_audit_log", {"limit": 100}))["entries"]
        assert audit[-len(before_audit) :] == before_audit or audit[: len(before_audit)] == before_audit
        assert (await call(client, NAME, {"text": "2m5s"})) == {"seconds": 125}  # the generated tool, served
        more = await call(client, "ingest_telemetry", {"tenant_id": "acme", "logs": logs,  # new ids after the copied
                                                       "events": [{**events[0], "id": "dep-2"}]})  # fmt: skip
        assert more["accepted"]["logs"] == 5 and more["accepted"]["events"] == 1
    assert not list(on_pg.data_dir.glob("*.sqlite3")), "the server on PostgreSQL made no SQLite store"

    again = run_migrate(tmp_path, settings, url)
    assert again.returncode == 1 and "already holds records" in again.stderr, again.stderr
    assert (settings.data_dir / "telemetry.sqlite3").exists(), "the SQLite files are only read"
