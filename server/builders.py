"""Builders the composition root uses: the deployer (with start-up recovery), the code generator built on first
use, the improvement cycle's configuration, the self-analyst, and the sampler's recorder into the telemetry store."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
from collections.abc import Awaitable, Callable, Collection
from contextlib import AsyncExitStack
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
from mcp.server.mcpserver import MCPServer

from generators.deploy import AuditLog, Deployer, VersionStore
from generators.deploy.failpoint import failpoint_hook
from generators.errors import NOT_CONFIGURED
from generators.improvement import CycleConfig
from generators.llm import LLMClient
from generators.toolhost import GeneratedTools, SqliteToolStore
from generators.toolhost.store import ToolStore
from generators.validation.jail import Jail
from generators.validation.scratch import SCRATCH_FOLDER, ScratchArea
from server.change_feed import ChangeFeed, NotifyingVersionStore
from server.databases import Databases
from server.settings import Settings
from telemetry.clock import Clock
from telemetry.errors import StorageFullError
from telemetry.host.models import Snapshot
from telemetry.host.points import snapshot_points
from telemetry.selfcheck.analysis import SelfAnalysisConfig
from telemetry.selfcheck.calls import CallRecorder, CallStore, SqliteCallStore
from telemetry.selfcheck.insights import SelfAnalyst
from telemetry.store.records import TelemetryStore
from tools import self_analysis
from tools.generated_tools import GeneratedSurface
from tools.surface import ToolSurface

if TYPE_CHECKING:
    from generators.codegen.generation import CodeGenerator
    from generators.jobs import Validation
    from generators.jobs.queue_pg import PostgresJobs
    from generators.validation import StageName, ValidationConfig

logger = logging.getLogger(__name__)
SOURCE_TREE = Path(__file__).resolve().parents[1]  # the folder holding the server package (a clone, site-packages)
FAILPOINT_VARIABLE = "SELF_BUILDING_DEPLOY_FAILPOINT"  # fault injection for crash drills (generators/deploy/failpoint)


def open_deployer(
    settings: Settings, clock: Callable[[], float], feed: ChangeFeed, databases: Databases | None = None
) -> tuple[Deployer, NotifyingVersionStore, AuditLog]:
    """Open the version store and audit log (on ``databases``' backend; SQLite files by default), build the deployer,
    and finish or undo deploy transactions a crash interrupted (blocking: run it in a worker thread). On failure
    nothing stays open.
    """
    databases = databases or Databases(settings)
    versions = NotifyingVersionStore(databases.versions(), feed)
    audit_log: AuditLog | None = None
    try:
        audit_log = databases.audit(clock)
        prepare_workspace(settings)
        failpoint = os.environ.get(FAILPOINT_VARIABLE)
        hook = failpoint_hook(failpoint) if failpoint else None
        if hook is not None:
            logger.warning("%s is set: deploys stop at %s (crash drills only)", FAILPOINT_VARIABLE, failpoint)
        deployer = Deployer(settings.workspace, settings.data_dir, versions, audit_log, clock=clock, hook=hook)
        for done in deployer.recover():
            level = logging.ERROR if done.outcome == "unresolved" else logging.WARNING
            logger.log(level, "start-up recovery of deployment %s: %s, now %s (%s)",
                       done.deployment_id, done.outcome, done.status, done.detail)  # fmt: skip
    except BaseException:
        versions.close()
        if audit_log is not None:
            audit_log.close()
        raise
    return deployer, versions, audit_log


def prepare_workspace(settings: Settings) -> None:
    """Create the workspace if it is missing (its first use: the deployer looks for git there and recovers into it)
    and say where it is; warn when it overlaps the server's own source tree (the default does not, unless the data
    directory lies in that tree)."""
    workspace = settings.workspace.resolve()
    named = "workspace" in settings.model_fields_set
    created = not workspace.is_dir()
    settings.workspace.mkdir(parents=True, exist_ok=True)
    how = (
        "named by SELF_BUILDING_WORKSPACE, --workspace or the config file"
        if named
        else "the default, in the data directory"
    )
    logger.info("workspace: %s (%s%s)", workspace, how, "; created now" if created else "")
    source = SOURCE_TREE.resolve()
    if source.is_relative_to(workspace) or workspace.is_relative_to(source):
        logger.warning(
            "the workspace %s %s the server's own source tree %s: generated code, deployments (and their git commits) "
            "and saved scripts go into it. If that is not meant, set SELF_BUILDING_WORKSPACE%s to another folder",
            workspace, "is or holds" if source.is_relative_to(workspace) else "lies inside", source,
            "" if named else " or SELF_BUILDING_DATA_DIR",
        )  # fmt: skip


def jail_from(settings: Settings) -> Jail:
    """The jail of generated code the settings ask for."""
    return Jail(
        settings.sandbox,
        bwrap=settings.sandbox_bwrap,
        sandbox_uid=settings.sandbox_uid,
        max_processes=settings.sandbox_max_processes,
    )


async def open_generated_tools(
    settings: Settings,
    opened: AsyncExitStack,
    app: MCPServer,
    feed: ChangeFeed,
    versions: VersionStore,
    audit: AuditLog,
    jail: Jail,
    clock: Clock,
    tool_store: Callable[[], ToolStore] | None = None,
) -> GeneratedTools:
    """The tools the server generated for itself: loaded (each in its jailed worker) and served by ``app``, kept in
    step with every change of a deployment; stopped, and no longer served, when ``opened`` closes."""
    store = await anyio.to_thread.run_sync(
        tool_store or partial(SqliteToolStore, settings.data_dir / "generated_tools.sqlite3")
    )
    opened.callback(store.close)
    tools = GeneratedTools(
        store, workspace=settings.workspace, versions=versions, audit=audit, jail=jail,
        folder=settings.data_dir / "generated-tools", clock=clock, on_change=partial(_tools_changed, feed),
    )  # fmt: skip
    opened.push_async_callback(anyio.to_thread.run_sync, tools.close)  # waits for calls in flight: off the loop
    await tools.sync()  # after a restart: the tools that were served are served again
    feed.on_deployments.append(tools.sync)
    opened.callback(feed.on_deployments.remove, tools.sync)  # a closed registry is not synced
    if isinstance(app, ToolSurface):
        app.generated = GeneratedSurface(tools)
        opened.callback(setattr, app, "generated", None)
    return tools


def _tools_changed(feed: ChangeFeed, tenants: frozenset[str]) -> None:
    """Generated tools of ``tenants`` came, changed or went: only keys that may read those tenants are told."""
    for tenant in tenants:
        feed.mark([], tenant=tenant, tools=True)


def open_scratch(settings: Settings) -> ScratchArea:
    """This server's folder for sandbox copies; removes what killed predecessors left (blocking)."""
    return ScratchArea.open(settings.data_dir / SCRATCH_FOLDER)


def validation_config(settings: Settings, scratch_dir: Path, jail: Jail) -> ValidationConfig:
    """How generated code is validated: the same in the server and in its workers."""
    from generators.validation import ValidationConfig

    return ValidationConfig(
        jail=jail,
        mypy_cache_dir=settings.data_dir / "mypy-cache",
        mypy_persistent=True,
        scratch_dir=scratch_dir,
        min_coverage_percent=settings.generation_min_coverage_percent,
    )


def generator_factory(
    llm: LLMClient,
    settings: Settings,
    stages: Collection[StageName] | None,
    scratch_dir: Path,
    jail: Jail,
    jobs: PostgresJobs | None = None,
) -> tuple[Callable[[], CodeGenerator], Callable[[], None]]:
    """The code generator, built (and its modules imported) on first use rather than at start-up; and a function
    that stops what it started (its long-lived mypy process). Its sandbox copies go into ``scratch_dir``; the code
    it generates runs in ``jail``; with ``jobs``, its validation goes to the workers' queue."""
    built: list[CodeGenerator] = []

    @functools.cache
    def build() -> CodeGenerator:
        from generators.codegen.generation import CodeGenerator
        from generators.jobs import LocalValidation
        from generators.jobs.benchmark import Benchmarks, LocalBenchmarks
        from generators.validation import ValidationPipeline

        pipeline = ValidationPipeline(validation_config(settings, scratch_dir, jail))
        local = LocalValidation(pipeline, settings.workspace)
        validation: Validation = local
        benchmarks: Benchmarks = LocalBenchmarks(settings.workspace, pipeline.config)
        if jobs is not None:
            from generators.jobs.queue_pg import QueuedBenchmarks, QueuedValidation

            claim = settings.worker_claim_seconds
            validation = QueuedValidation(jobs, local, claim_seconds=claim)
            benchmarks = QueuedBenchmarks(jobs, benchmarks, claim_seconds=claim)
        generator = CodeGenerator(
            llm,
            pipeline,
            settings.workspace,
            max_rounds=settings.generation_max_rounds,
            stages=stages,
            test_timeout=settings.validation_test_timeout_seconds,
            prompt_tokens=settings.generation_prompt_tokens,
            validation=validation,
            benchmarks=benchmarks,
        )
        built.append(generator)
        return generator

    def close() -> None:
        for generator in built:
            generator.pipeline.close()

    return build, close


def cycle_config(settings: Settings) -> CycleConfig:
    """The improvement cycle's configuration from the settings."""
    return CycleConfig(
        monitoring_seconds=settings.improvement_monitoring_seconds,
        regression_percent=settings.improvement_regression_percent,
        benchmark_runs=settings.improvement_benchmark_runs,
        benchmark_max_runs=settings.improvement_benchmark_max_runs,
        confidence=settings.improvement_confidence,
        min_effect_percent=settings.improvement_min_effect_percent,
        candidates_per_opportunity=settings.improvement_candidates_per_opportunity,
        benchmark_timeout_seconds=settings.improvement_benchmark_timeout_seconds,
        max_concurrency=settings.improvement_max_concurrency,
        rollback_enabled=settings.enable_improvement_rollback,
        review_required=settings.improvement_review_required,
        review_components=frozenset(settings.improvement_review_components),
        default_tenant=settings.default_tenant,
    )


def audit_cloudwatch(audit_log: AuditLog, kind: str, detail: dict[str, Any]) -> None:
    audit_log.append(kind, "cloudwatch", actor="server", tenant="system", detail=detail)


def cycles_ready(settings: Settings, llm: LLMClient) -> str | None:
    """Why cycles cannot run without a caller now, or ``None``."""
    if not settings.enable_self_building:
        return "self-building is switched off (enable_self_building)"
    if not llm.configured:
        return NOT_CONFIGURED
    return None


def self_analyst(
    settings: Settings, clock: Clock, app: MCPServer, calls: Callable[[], CallStore] | None = None
) -> SelfAnalyst:
    """The recorder of every tool call (into ``calls()``; a SQLite file by default) and its analyst (blocking)."""
    recorder = CallRecorder(
        calls() if calls is not None else SqliteCallStore(settings.data_dir / "tool_calls.sqlite3"),
        retention_seconds=settings.tool_calls_retention_days * 86400,
        clock=clock,
    )
    return SelfAnalyst(
        recorder,
        tenant=settings.self_analysis_tenant,
        interval_seconds=settings.self_analysis_interval_hours * 3600,
        clock=clock,
        components=partial(self_analysis.tool_components, app),
        config=SelfAnalysisConfig(slow_p95_seconds=settings.self_analysis_slow_seconds),
    )


def snapshot_recorder(store: TelemetryStore, tenant: str) -> Callable[[Snapshot], Awaitable[None]]:
    """A sampler listener that writes each snapshot's figures into the telemetry store (source ``local``)."""

    async def record(snapshot: Snapshot) -> None:
        with contextlib.suppress(StorageFullError):  # the store logs the episode once; the next snapshot retries
            await anyio.to_thread.run_sync(store.add_metrics, snapshot_points(snapshot, tenant))

    return record
