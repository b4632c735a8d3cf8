from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.server.auth.middleware.auth_context import auth_context_var
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from mcp.server.mcpserver import MCPServer
from pydantic import SecretStr

from generators.validation.jail import Jail
from server.app import create_server
from server.auth import SCOPE
from server.settings import Settings
from telemetry.host.gpu import GpuSource
from tests.fake_clock import FakeClock
from tests.fakes import FakeHostSource, NoGpu
from tests.llm_server import scripted_llm  # noqa: F401 - a fixture, shared with every test module
from tests.moto_server import aws, moto  # noqa: F401 - fixtures, shared with every test module
from tests.polling import eventually
from tests.postgres_server import PostgresServer, postgres  # noqa: F401 - a fixture, shared with every test module
from tools.access import Role, scopes_for

# What configures the server and its LLM client on a developer's machine: the tests set what they need themselves.
_SERVER_ENV = ("SELF_BUILDING_", "OPENAI_")
# The test harness's own switches, set on purpose (CI requires the browser).
_HARNESS_ENV = ("SELF_BUILDING_TEST_", "SELF_BUILDING_REQUIRE_")

# Generated code runs in bubblewrap. Where it cannot start (a machine with only Python), the suite runs it unjailed
# and the jail's own tests skip; .ci/run installs bubblewrap and sets SELF_BUILDING_REQUIRE_JAIL=1, so they run there.
JAIL_READY = Jail("bwrap").status().ready
if not JAIL_READY and not os.environ.get("SELF_BUILDING_REQUIRE_JAIL"):
    Jail.DEFAULT_MODE = "none"
SANDBOX = Jail.DEFAULT_MODE


@pytest.fixture(autouse=True, scope="session")
def clean_environ() -> Iterator[None]:
    """No test sees the server settings of the shell it runs in (as httpx's own ``clean_environ``); session-wide,
    so that module-scoped fixtures (a server built once per module, a subprocess) do not see them either."""
    with pytest.MonkeyPatch.context() as patch:
        for name in list(os.environ):
            if name.startswith(_SERVER_ENV) and not name.startswith(_HARNESS_ENV):
                patch.delenv(name)
        yield


# The suite runs on pytest-xdist, each test module on one worker (--dist=loadfile: a module's servers and fixtures are
# set up once). A test mostly waits (on a server, a sandbox, a browser), so there are more workers than CPUs; beyond
# one and a half per CPU the workers' own start-up costs more CPU than the waiting leaves free (measured: 3 workers on
# 2 CPUs 263 s, 4 workers 271 s).
WORKERS_PER_CPU = 1.5


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """``--numprocesses=auto`` (the default, from pyproject.toml); ``-n 0`` runs in-process."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(2, round(WORKERS_PER_CPU * cpus))


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--backend",
        choices=("sqlite", "postgresql"),
        default="sqlite",
        help="the stores of the servers the `settings` fixture configures: the embedded SQLite files (the default) or "
        "a new database per test on a real PostgreSQL (Debian's postgresql package)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """With ``--backend postgresql``, only the tests whose servers take their settings from the ``settings`` fixture
    run (on PostgreSQL): the others do not depend on the option and ran in the default pass."""
    if config.getoption("--backend") != "postgresql":
        return
    kept = [item for item in items if "settings" in getattr(item, "fixturenames", ())]
    config.hook.pytest_deselected(items=[item for item in items if item not in kept])
    items[:] = kept


@pytest.fixture
def settings(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Settings]:
    base = Settings(data_dir=tmp_path / "data", workspace=tmp_path / "ws", status_max_age_seconds=3600, sandbox=SANDBOX)
    if request.config.getoption("--backend") != "postgresql":
        yield base
        return
    server: PostgresServer = request.getfixturevalue("postgres")
    url = server.new_database()
    yield base.model_copy(update={"database_url": SecretStr(url)})
    server.drop_database(url)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def host() -> FakeHostSource:
    return FakeHostSource()


ServerFactory = Callable[..., MCPServer]
# The public contract: tool names agents depend on.
PUBLIC_TOOLS = {
    "get_system_status",
    "start_monitoring",
    "stop_monitoring",
    "get_monitoring_status",
    "query_monitoring_events",
    "clear_monitoring_events",
    "set_monitoring_thresholds",
    "analyze_system_performance",
    "get_top_processes",
    "list_script_templates",
    "generate_script",
    "save_script",
    "ingest_telemetry",
    "query_telemetry_insights",
    "get_telemetry_sources",
    "get_alarm_states",
    "query_error_patterns",
    "list_deployments",
    "get_deployment",
    "rollback_deployment",
    "list_pending_approvals",
    "approve_change",
    "query_audit_log",
    "generate_component",
    "trigger_improvement_cycle",
    "get_improvement_cycle",
    "analyze_self",
}


@pytest.fixture
def make_server(settings: Settings, host: FakeHostSource) -> ServerFactory:
    def factory(gpu: GpuSource | None = None, clock: FakeClock | None = None, **overrides: Any) -> MCPServer:
        merged = settings.model_copy(update=overrides)
        return create_server(merged, host_source=host, gpu_source=gpu or NoGpu(), clock=clock)

    return factory


@asynccontextmanager
async def connect(server: MCPServer, **kwargs: Any) -> AsyncIterator[Client]:
    async with Client(server, raise_exceptions=True, **kwargs) as client:
        yield client


async def call(client: Client, tool: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
    """Call a tool that must succeed; return its structured content."""
    result = await client.call_tool(tool, args or {})
    assert not result.is_error, result.content
    assert result.structured_content is not None
    return result.structured_content


async def call_error(client: Client, tool: str, args: dict[str, Any]) -> str:
    """Call a tool that must fail; return the error text the model sees."""
    result = await client.call_tool(tool, args)
    assert result.is_error, result.structured_content
    text = result.content[0].text  # type: ignore[union-attr]
    assert isinstance(text, str)
    return text


async def wait_samples(host: FakeHostSource, count: int, timeout: float = 10.0) -> None:
    """Wait until the fake has been sampled ``count`` times in all (bounded): by monitoring on real time."""
    await eventually(lambda: host.samples >= count, f"{count} samples of the host", timeout)


@contextmanager
def as_key(name: str, roles: Iterable[Role], tenants: Iterable[str]) -> Iterator[None]:
    """Make the in-memory client's requests arrive as if the HTTP verifier had accepted this key."""
    token = AccessToken(token="<api-key>", client_id=name, scopes=[SCOPE, *scopes_for(roles, tenants)])
    reset = auth_context_var.set(AuthenticatedUser(token))
    try:
        yield
    finally:
        auth_context_var.reset(reset)


@asynccontextmanager
async def mcp_as(base: str, key: str) -> AsyncIterator[Client]:
    """An MCP client of the HTTP server at ``base`` that sends ``key`` as its Bearer key."""
    async with (
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=30) as http,
        Client(streamable_http_client(f"{base}/mcp", http_client=http)) as client,
    ):
        yield client


@pytest.fixture
def http_server(tmp_path: Path) -> Iterator[str]:
    """The real server over HTTP in a subprocess, with the API key ``tests.test_transports.KEY``."""
    from tests.test_transports import KEY, start_http

    proc, base = start_http(tmp_path, SELF_BUILDING_MCP_API_KEY=KEY)
    try:
        yield base
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
        assert KEY not in err  # the key never reaches the logs
