"""Composition root: ``create_server(settings)`` builds the MCP server; its lifespan owns every service."""

from __future__ import annotations

import functools
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from contextlib import asynccontextmanager
from functools import partial
from typing import TYPE_CHECKING, Any

import anyio
from mcp.server.context import CallNext, HandlerResult, ServerMiddleware, ServerRequestContext
from mcp.server.mcpserver import MCPServer
from mcp.server.subscriptions import InMemorySubscriptionBus

from generators.deploy import Deployer, Deployment, SqliteAuditLog, SqliteVersionStore
from generators.deploy.failpoint import failpoint_hook
from generators.improvement import CycleConfig, SqliteCycleStore
from generators.improvement.candidate import CandidateRunner
from generators.improvement.cycle import ImprovementService
from generators.llm import LLMClient
from generators.remediation import ScriptGenerator
from server import __version__
from server.auth import auth_settings, key_verifier
from server.cloudwatch_publishing import start_publishing
from server.dashboard import add_dashboard_routes
from server.improvement_wiring import LearningOpportunities, TelemetryFigures, alarm_listener
from server.live_resources import (
    ChangeFeed,
    ObservedCycleStore,
    ObservedVersionStore,
    SelfBuildingServer,
    watched_deployments,
)
from server.metrics import ServerMetrics
from server.metrics_route import add_metrics_route
from server.notifications import Notifier
from server.settings import Settings, llm_config
from telemetry.calls import CallRecorder, SqliteCallStore
from telemetry.cloudwatch.streamer import CloudWatchStreamer
from telemetry.events import SqliteEventStore
from telemetry.gpu import GpuSource, NvmlGpuSource
from telemetry.host import HostSource, PsutilHostSource
from telemetry.learning import LearningEngine
from telemetry.live import AnomalyWatch, ObservedStore, PatternWatch
from telemetry.local_metrics import snapshot_points
from telemetry.models import Snapshot
from telemetry.monitor import Monitor
from telemetry.retention import prune_forever, prune_once
from telemetry.sampler import Sampler
from telemetry.self_insights import SelfAnalyst
from telemetry.sqlite_store import SqliteTelemetryStore
from telemetry.store import TelemetryStore
from tools import (
    audit,
    deployments,
    generation,
    improvement,
    insights,
    monitoring,
    patterns,
    performance,
    prompts,
    scripts,
    self_analysis,
    sources,
    status,
    telemetry,
)
from tools.services import Services, ServicesRef

if TYPE_CHECKING:
    from generators.generation import CodeGenerator
    from generators.validation import StageName

logger = logging.getLogger(__name__)
SERVER_NAME = "self-building-mcp"
FAILPOINT_VARIABLE = "SELF_BUILDING_DEPLOY_FAILPOINT"  # fault injection for crash drills (generators/deploy/failpoint)
INSTRUCTIONS = """\
self-building-mcp watches the host it runs on (CPU, memory, disks, I/O, NVIDIA GPUs), raises monitoring events
when thresholds are crossed, explains bottlenecks and writes remediation scripts (dry-run by default) that a
human runs. Start with get_system_status; use analyze_system_performance for the why; generate_script or
save_script for a fix. The prompt diagnose_system walks through all of it.
It also learns from telemetry per tenant: push metrics, logs and events with ingest_telemetry (CloudWatch can
stream in too); query_telemetry_insights gives trends, degradations, anomalies, error patterns and ranked
improvement opportunities; query_error_patterns groups log lines into templates; get_telemetry_sources and
get_alarm_states show the sources' health and CloudWatch alarms.
With an LLM configured, generate_component writes, validates and (on request) deploys new components, and
trigger_improvement_cycle improves the components behind the top opportunities (validate, deploy, measure, keep or
roll back; dry_run to only look); get_improvement_cycle follows a cycle. list_deployments, get_deployment,
rollback_deployment, approve_change and query_audit_log manage what was deployed.
analyze_self reports how this server's own tools are used and behave (timings, failures, bias, anomalies) with
prioritised optimisation suggestions."""


def create_server(
    settings: Settings,
    *,
    host_source: HostSource | None = None,
    gpu_source: GpuSource | None = None,
    clock: Callable[[], float] = time.time,
    validation_stages: Collection[StageName] | None = None,
) -> MCPServer:
    """Build the server. Nothing starts until the lifespan runs (first connection or transport start).

    ``validation_stages`` limits the validation of generated code (every stage by default; tests skip slow ones).
    """
    bus = InMemorySubscriptionBus()
    metrics = ServerMetrics()
    notifier = Notifier(bus)
    ref = ServicesRef()

    async def watched() -> list[Deployment]:
        svc = ref.get()
        return await anyio.to_thread.run_sync(watched_deployments, svc.versions, svc.improvements.store)

    feed = ChangeFeed(notifier.resource_updated, notifier.resources_changed, watched, notifier.tools_changed)

    @asynccontextmanager
    async def lifespan(app: MCPServer) -> AsyncIterator[Services]:
        store = await anyio.to_thread.run_sync(SqliteEventStore, settings.events_db_path)
        raw_store = await anyio.to_thread.run_sync(SqliteTelemetryStore, settings.telemetry_db_path)
        analyst = await anyio.to_thread.run_sync(_self_analyst, settings, clock, app)
        deployer, versions, audit_log = await anyio.to_thread.run_sync(_open_deployer, settings, clock, feed)
        llm = LLMClient(llm_config(settings))
        generator, close_generator = _generator_factory(llm, settings, validation_stages)
        anomalies = AnomalyWatch(history=raw_store, max_series=settings.anomaly_max_series)
        retention = settings.telemetry_retention_days * 86400
        pattern_watch = PatternWatch(raw_store, retention_seconds=retention, clock=clock)
        telemetry_store = ObservedStore(raw_store, anomalies, pattern_watch)
        sampler = Sampler(
            host_source or PsutilHostSource(),
            gpu_source or NvmlGpuSource(),
            max_age=settings.status_max_age_seconds,
            clock=clock,
        )
        monitor = Monitor(
            sampler,
            store,
            interval=settings.monitoring_interval_seconds,
            max_events=settings.events_max_count,
            max_age_seconds=settings.events_max_age_days * 86400,
            clock=clock,
        )
        learning = LearningEngine(
            raw_store,
            analysers=[partial(anomalies.insights, raw_store), pattern_watch.insights, analyst.insights],
            clock=clock,
        )
        cycles = ObservedCycleStore(
            await anyio.to_thread.run_sync(SqliteCycleStore, settings.data_dir / "cycles.sqlite3"), feed
        )
        runner = CandidateRunner(
            store=cycles,
            deployer=deployer,
            audit=audit_log,
            generator=generator,
            figures=TelemetryFigures(raw_store),
            config=cycle_config(settings),
            clock=clock,
        )
        improvements = ImprovementService(
            runner,
            LearningOpportunities(learning),
            ready=partial(_cycles_ready, settings, llm),
            autonomous_tenants=tuple(settings.autonomous_tenants or [settings.default_tenant])
            if settings.enable_autonomous_improvements
            else (),
            autonomous_interval_seconds=settings.autonomous_interval_hours * 3600,
        )
        cloudwatch = (
            CloudWatchStreamer(
                settings.cloudwatch, telemetry_store, clock=clock, on_access=partial(_audit_cloudwatch, audit_log)
            )
            if settings.enable_cloudwatch_streaming
            else None
        )
        services = Services(
            version=__version__,
            started_at=clock(),
            sampler=sampler,
            monitor=monitor,
            scripts=ScriptGenerator(),
            scripts_dir=settings.scripts_dir,
            telemetry=telemetry_store,
            learning=learning,
            cloudwatch=cloudwatch,
            default_tenant=settings.default_tenant,
            anomalies=anomalies,
            patterns=pattern_watch,
            deployer=deployer,
            versions=versions,
            audit=audit_log,
            llm=llm,
            generator=generator,
            improvements=improvements,
            improvement_wait_seconds=settings.improvement_wait_seconds,
            self_building_enabled=settings.enable_self_building,
            component_generation_enabled=settings.enable_component_generation,
            clock=clock,
            retention_seconds=retention,
            self_analyst=analyst,
        )
        try:
            async with anyio.create_task_group() as task_group:
                await monitor.open(task_group)
                monitor.add_listener(notifier.on_events)
                monitor.add_listener(metrics.on_monitoring_events)
                telemetry_store.stored_listeners.append(metrics.on_stored)
                metrics.services = services
                sampler.add_listener(_recorder(telemetry_store, settings.default_tenant))
                await improvements.open(task_group)
                telemetry_store.event_listeners.append(
                    alarm_listener(settings.critical_alarms, improvements.request_emergency)
                )
                await prune_once(telemetry_store, retention, clock)
                task_group.start_soon(partial(prune_forever, telemetry_store, retention, clock=clock))
                task_group.start_soon(analyst.recorder.run)
                if settings.self_analysis_interval_hours > 0:
                    task_group.start_soon(analyst.run)
                if cloudwatch is not None:
                    if not settings.cloudwatch.watches_anything:
                        logger.warning("CloudWatch streaming is on but nothing is configured to watch")
                    task_group.start_soon(cloudwatch.run)
                publisher = await start_publishing(settings, metrics) if settings.enable_cloudwatch_publishing else None
                if publisher is not None:
                    task_group.start_soon(publisher.run)
                if settings.monitoring_autostart:
                    await monitor.start()
                    logger.info("monitoring started (interval %.1fs)", monitor.interval)
                ref.set(services)
                task_group.start_soon(feed.run)
                try:
                    yield services
                finally:
                    ref.clear()
                    if publisher is not None:
                        await publisher.close()  # the last figures go out (shielded, bounded)
                    await monitor.stop()
                    task_group.cancel_scope.cancel()
        finally:
            sampler.close()
            store.close()
            telemetry_store.close()
            versions.close()
            audit_log.close()
            cycles.close()
            analyst.recorder.close()  # writes the calls still buffered
            with anyio.CancelScope(shield=True):  # the lifespan may end by cancellation: close regardless
                try:
                    await anyio.to_thread.run_sync(close_generator)
                finally:
                    await llm.close()

    verifier = key_verifier(settings)
    server = SelfBuildingServer(
        SERVER_NAME,
        token_verifier=verifier,
        auth=auth_settings() if verifier else None,
        title="Self-building MCP",
        instructions=INSTRUCTIONS,
        version=__version__,
        lifespan=lifespan,
        subscriptions=bus,
        log_level=settings.log_level,
        middleware=[notifier.track_sessions, _tool_call_counter(metrics), self_analysis.call_recorder()],
    )
    server.watched = watched
    server.feed = feed
    notifier.install(server)
    add_metrics_route(server, metrics, settings, verifier)
    server.on_http_stop.append(add_dashboard_routes(server, settings, verifier, ref, bus).streams.stop)
    status.register(server, ref)
    monitoring.register(server, ref)
    performance.register(server)
    scripts.register(server)
    prompts.register(server)
    telemetry.register(server)
    insights.register(server)
    patterns.register(server)
    sources.register(server)
    deployments.register(server, ref)
    audit.register(server)
    generation.register(server)
    improvement.register(server, ref)
    self_analysis.register(server)
    return server


def _open_deployer(
    settings: Settings, clock: Callable[[], float], feed: ChangeFeed
) -> tuple[Deployer, ObservedVersionStore, SqliteAuditLog]:
    """Open the version store and audit log, build the deployer, and finish or undo deploy transactions a crash
    interrupted (blocking: run it in a worker thread). On failure nothing stays open.
    """
    versions = ObservedVersionStore(SqliteVersionStore(settings.data_dir / "versions.sqlite3"), feed)
    audit_log: SqliteAuditLog | None = None
    try:
        audit_log = SqliteAuditLog(settings.data_dir / "audit.sqlite3", clock)
        settings.workspace.mkdir(parents=True, exist_ok=True)
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


def _generator_factory(
    llm: LLMClient, settings: Settings, stages: Collection[StageName] | None
) -> tuple[Callable[[], CodeGenerator], Callable[[], None]]:
    """The code generator, built (and its modules imported) on first use rather than at start-up; and a function
    that stops what it started (its long-lived mypy process)."""
    built: list[CodeGenerator] = []

    @functools.cache
    def build() -> CodeGenerator:
        from generators.generation import CodeGenerator
        from generators.validation import ValidationConfig, ValidationPipeline

        config = ValidationConfig(mypy_cache_dir=settings.data_dir / "mypy-cache", mypy_persistent=True)
        generator = CodeGenerator(
            llm,
            ValidationPipeline(config),
            settings.workspace,
            max_rounds=settings.generation_max_rounds,
            stages=stages,
            test_timeout=settings.validation_test_timeout_seconds,
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
        benchmark_timeout_seconds=settings.improvement_benchmark_timeout_seconds,
        max_concurrency=settings.improvement_max_concurrency,
        rollback_enabled=settings.enable_improvement_rollback,
        review_required=settings.improvement_review_required,
        review_components=frozenset(settings.improvement_review_components),
        default_tenant=settings.default_tenant,
    )


def _audit_cloudwatch(audit_log: SqliteAuditLog, kind: str, detail: dict[str, Any]) -> None:
    audit_log.append(kind, "cloudwatch", actor="server", tenant="system", detail=detail)


def _cycles_ready(settings: Settings, llm: LLMClient) -> str | None:
    """Why cycles cannot run without a caller now, or ``None``."""
    if not settings.enable_self_building:
        return "self-building is switched off (enable_self_building)"
    if not llm.configured:
        return "no LLM is configured (SELF_BUILDING_LLM_MODEL and SELF_BUILDING_LLM_BASE_URL)"
    return None


def _self_analyst(settings: Settings, clock: Callable[[], float], app: MCPServer) -> SelfAnalyst:
    """The recorder of every tool call and its analyst (blocking: opens the SQLite file)."""
    recorder = CallRecorder(
        SqliteCallStore(settings.data_dir / "tool_calls.sqlite3"),
        retention_seconds=settings.tool_calls_retention_days * 86400,
        clock=clock,
    )
    return SelfAnalyst(
        recorder,
        tenant=settings.self_analysis_tenant,
        interval_seconds=settings.self_analysis_interval_hours * 3600,
        clock=clock,
        components=partial(self_analysis.tool_components, app),
    )


def _recorder(store: TelemetryStore, tenant: str) -> Callable[[Snapshot], Awaitable[None]]:
    """A sampler listener that writes each snapshot's figures into the telemetry store (source ``local``)."""

    async def record(snapshot: Snapshot) -> None:
        await anyio.to_thread.run_sync(store.add_metrics, snapshot_points(snapshot, tenant))

    return record


def _tool_call_counter(metrics: ServerMetrics) -> ServerMiddleware[Any]:
    async def count_tool_calls(ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        """Count tool calls, failures and latency per tool: get_system_status and /metrics report them."""
        if ctx.method != "tools/call":
            return await call_next(ctx)
        name = str((ctx.params or {}).get("name", "?"))
        stats = getattr(ctx.lifespan_context, "stats", None)
        started = time.perf_counter()
        failed = True
        try:
            result = await call_next(ctx)
            failed = bool(getattr(result, "is_error", False)) or (
                isinstance(result, dict) and bool(result.get("isError"))
            )
            return result
        finally:
            if stats is not None:
                stats.record(name, failed=failed)
            metrics.tool_call(name, failed, time.perf_counter() - started)

    return count_tool_calls
