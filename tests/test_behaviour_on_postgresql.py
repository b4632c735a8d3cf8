"""Behaviour tests through the MCP client, run again with every store in PostgreSQL (a real server, a database per
test): the same functions as ``tests/test_improvement_cycle.py``, ``tests/test_generated_tools.py`` and some of the
telemetry, monitoring and self-analysis ones (ingest, insights, the event timeline, the tool-call store), given
settings that name the database. What they prove on SQLite — a faster change kept and a slower one rolled back to the
exact bytes, dry runs, approvals, a regression seen in telemetry, an interrupted cycle judged after a restart, a
generated tool served to its tenant only, across a restart and gone with its rollback, insights found and refreshed,
events raised and cleared, calls seen only by their tenant's keys, autonomous and emergency cycles (CloudWatch alarms
from moto's server) — holds on the second backend."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from mcp.server.mcpserver import MCPServer
from pydantic import SecretStr

from server.app import create_server
from server.settings import Settings
from telemetry.host.gpu import GpuSource
from tests import test_generated_tools as tools
from tests import test_improvement_cycle as behaviour
from tests import test_ingest as ingest
from tests import test_insights as insights
from tests import test_monitoring as monitoring
from tests import test_self_analysis as self_analysis
from tests import test_stats_cache as stats_cache
from tests.conftest import ServerFactory
from tests.fake_clock import FakeClock
from tests.fakes import FakeHostSource, NoGpu
from tests.llm_server import ScriptedLLM
from tests.moto_server import MotoServer
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
    behaviour.test_llm_timeout_is_reported,
    behaviour.test_no_llm_and_no_opportunities,
    behaviour.test_autonomous_mode_runs_cycles_on_its_schedule,
    behaviour.test_autonomous_mode_off_by_default,
    behaviour.test_self_analysis_findings_lead_a_cycle_to_the_servers_own_code,
    behaviour.test_pushed_telemetry_cannot_aim_a_cycle_at_the_servers_own_code,
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


TELEMETRY_TESTS: list[Callable[[ServerFactory], Awaitable[Any]]] = [
    insights.test_a_worsening_from_a_zero_baseline_has_no_percentage_and_ranks_as_a_full_gain,
    insights.test_degradation_trend_and_opportunity,
    insights.test_steady_data_gives_no_insights,
    insights.test_insight_ids_are_stable,
    stats_cache.test_a_degradation_pushed_after_a_first_analysis_is_found_by_the_next,
    ingest.test_bad_tenant_and_oversized_push_are_tool_errors,
    ingest.test_rejections_are_capped_with_has_more,
    self_analysis.test_analyze_self_reports_usage_timings_failures_bias_and_suggestions,
    self_analysis.test_a_tenant_key_sees_only_its_tenants_calls,
    self_analysis.test_a_tenant_named_by_a_key_that_may_not_use_it_never_sees_the_call,
    self_analysis.test_bad_lookback_is_a_clear_tool_error,
]
MONITORING_TESTS: list[Callable[[ServerFactory, FakeHostSource, FakeClock], Awaitable[Any]]] = [
    monitoring.test_condition_must_hold_for_consecutive_samples,
    monitoring.test_ongoing_condition_updates_one_event_and_clears_with_hysteresis,
    monitoring.test_cpu_spike_and_disk_full,
    monitoring.test_query_filters_limit_and_has_more,
    monitoring.test_retention_prunes_by_count,
]


def factory_on(on_pg: Settings, host: FakeHostSource) -> ServerFactory:
    """``make_server`` with every store in PostgreSQL."""

    def factory(gpu: GpuSource | None = None, clock: FakeClock | None = None, **overrides: Any) -> MCPServer:
        return create_server(
            on_pg.model_copy(update=overrides), host_source=host, gpu_source=gpu or NoGpu(), clock=clock
        )

    return factory


@pytest.mark.parametrize("test", TELEMETRY_TESTS, ids=[t.__name__.removeprefix("test_") for t in TELEMETRY_TESTS])
async def test_telemetry_on_postgresql(
    test: Callable[[ServerFactory], Awaitable[Any]],
    settings: Settings,
    host: FakeHostSource,
    postgres: PostgresServer,  # noqa: F811
) -> None:
    """Ingest, insights (the rollups, the kept windows and their versions) and the server's analysis of its own calls
    (the call store) behave the same on PostgreSQL."""
    on_pg = settings.model_copy(update={"database_url": SecretStr(postgres.new_database())})
    await test(factory_on(on_pg, host))
    assert not list(settings.data_dir.glob("*.sqlite3")), "every store was in PostgreSQL"


@pytest.mark.parametrize("test", MONITORING_TESTS, ids=[t.__name__.removeprefix("test_") for t in MONITORING_TESTS])
async def test_monitoring_on_postgresql(
    test: Callable[[ServerFactory, FakeHostSource, FakeClock], Awaitable[Any]],
    settings: Settings,
    clock: FakeClock,
    postgres: PostgresServer,  # noqa: F811
) -> None:
    """Threshold monitoring and its event timeline behave the same with the events in PostgreSQL (on the fake clock,
    as ``tests/test_monitoring.py``'s own fixtures set them up)."""
    on_pg = settings.model_copy(update={"database_url": SecretStr(postgres.new_database())})
    host = FakeHostSource(clock=clock)
    await test(functools.partial(factory_on(on_pg, host), clock=clock), host, clock)
    assert not list(settings.data_dir.glob("*.sqlite3")), "every store was in PostgreSQL"


async def test_a_critical_alarm_starts_one_emergency_cycle_per_component_on_postgresql(
    settings: Settings,
    scripted_llm: ScriptedLLM,
    aws: MotoServer,
    postgres: PostgresServer,  # noqa: F811
) -> None:
    """CloudWatch streaming (moto's server) and the emergency cycles its critical alarms start, with the server on
    PostgreSQL: they run on the holder of the lease, here the one replica."""
    on_pg = settings.model_copy(update={"database_url": SecretStr(postgres.new_database())})
    await behaviour.test_critical_alarm_starts_one_emergency_cycle_per_component(on_pg, scripted_llm, aws)
    assert not list(settings.data_dir.glob("*.sqlite3")), "every store was in PostgreSQL"
