"""Behaviour tests through the MCP client, run again with every store in PostgreSQL (a real server, a database per
test): the same functions as ``tests/test_improvement_cycle.py`` and ``tests/test_generated_tools.py``, given settings
that name the database. What they prove on SQLite — a faster change kept and a slower one rolled back to the exact
bytes, dry runs, approvals, a regression seen in telemetry, an interrupted cycle judged after a restart, a generated
tool served to its tenant only, across a restart and gone with its rollback — holds on the second backend."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from pydantic import SecretStr

from server.settings import Settings
from tests import test_generated_tools as tools
from tests import test_improvement_cycle as behaviour
from tests.fakes import FakeHostSource
from tests.llm_server import ScriptedLLM
from tests.postgres_server import PostgresServer, postgres  # noqa: F401 - the fixture

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

SAME_TESTS: list[Callable[[Settings, ScriptedLLM], Awaitable[Any]]] = [
    behaviour.test_faster_change_is_kept_slower_one_rolled_back_byte_identical,
    behaviour.test_dry_run_validates_and_writes_nothing,
    behaviour.test_reviewed_change_waits_for_approval_then_is_monitored,
    behaviour.test_regression_seen_in_telemetry_is_rolled_back,
    behaviour.test_unmatched_search_is_fed_back_and_a_later_round_succeeds,
    behaviour.test_interrupted_cycle_is_reported_and_its_deployment_still_judged,
    behaviour.test_a_tenant_cycle_never_touches_the_shared_root,
    behaviour.test_a_module_changed_while_the_model_worked_is_not_overwritten,
    behaviour.test_active_improvements_resource_follows_a_cycle,
]


@pytest.mark.parametrize("test", SAME_TESTS, ids=[t.__name__.removeprefix("test_") for t in SAME_TESTS])
async def test_on_postgresql(
    test: Callable[[Settings, ScriptedLLM], Awaitable[Any]],
    settings: Settings,
    scripted_llm: ScriptedLLM,
    postgres: PostgresServer,  # noqa: F811
) -> None:
    on_pg = settings.model_copy(update={"database_url": SecretStr(postgres.new_database())})
    await test(on_pg, scripted_llm)
    assert not list(settings.data_dir.glob("*.sqlite3")), "every store was in PostgreSQL"


TOOL_TESTS: list[Callable[[Settings, FakeHostSource, ScriptedLLM], Awaitable[Any]]] = [
    tools.test_a_tool_is_built_served_to_its_tenant_survives_a_restart_and_goes_with_its_rollback,
    tools.test_a_tenants_tool_changes_reach_only_listeners_that_may_read_it,
    tools.test_a_system_tool_waits_for_approval_and_is_served_once_approved,
    tools.test_a_tool_whose_code_fails_becomes_an_opportunity_of_its_tenant,
]


@pytest.mark.parametrize("test", TOOL_TESTS, ids=[t.__name__.removeprefix("test_") for t in TOOL_TESTS])
async def test_generated_tools_on_postgresql(
    test: Callable[[Settings, FakeHostSource, ScriptedLLM], Awaitable[Any]],
    settings: Settings,
    host: FakeHostSource,
    scripted_llm: ScriptedLLM,
    postgres: PostgresServer,  # noqa: F811
) -> None:
    on_pg = settings.model_copy(update={"database_url": SecretStr(postgres.new_database())})
    await test(on_pg, host, scripted_llm)
    assert not list(settings.data_dir.glob("*.sqlite3")), "every store was in PostgreSQL"
