"""Composition root: ``create_server(settings)`` builds the MCP server; its lifespan owns every service."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable, Collection
from contextlib import AsyncExitStack, asynccontextmanager
from functools import partial
from typing import TYPE_CHECKING

import anyio
from mcp.server.mcpserver import MCPServer
from mcp.server.subscriptions import InMemorySubscriptionBus

from generators.deploy import Deployment
from generators.improvement import SqliteCycleStore
from generators.improvement.attempts import SqliteAttemptArchive
from generators.improvement.candidate import CandidateRunner
from generators.improvement.cycle import ImprovementService
from generators.llm import LLMClient, SpendLedger
from generators.remediation import ScriptGenerator
from server import __version__
from server.auth import auth_settings, key_verifier
from server.builders import (
    audit_cloudwatch,
    cycle_config,
    cycles_ready,
    generator_factory,
    open_deployer,
    open_scratch,
    self_analyst,
    snapshot_recorder,
)
from server.change_feed import ChangeFeed, ObservedCycleStore, watched_deployments
from server.dashboard import add_dashboard_routes
from server.improvement_wiring import LearningOpportunities, TelemetryFigures, alarm_listener
from server.live_resources import SelfBuildingServer
from server.metrics import ServerMetrics
from server.metrics_route import add_metrics_route
from server.notifications import Notifier
from server.settings import Settings, llm_config
from telemetry.cloudwatch.streamer import CloudWatchStreamer
from telemetry.host.gpu import GpuSource, NvmlGpuSource
from telemetry.host.sampler import Sampler
from telemetry.host.system import HostSource, PsutilHostSource
from telemetry.learning.engine import LearningEngine
from telemetry.learning.live import AnalysingStore, AnomalyWatch, PatternWatch
from telemetry.monitoring.events import SqliteEventStore
from telemetry.monitoring.monitor import Monitor
from telemetry.store.retention import prune_forever, prune_once
from telemetry.store.sqlite_store import SqliteTelemetryStore
from tools import (
    audit,
    deployments,
    generation,
    improvement,
    ingestion,
    insights,
    monitoring,
    patterns,
    performance,
    prompts,
    scripts,
    self_analysis,
    sources,
    status,
)
from tools.call_observer import tool_call_observer
from tools.services import Services, ServicesRef

if TYPE_CHECKING:
    from generators.validation import StageName
    from telemetry.cloudwatch.publisher import MetricPublisher

logger = logging.getLogger(__name__)
SERVER_NAME = "self-building-mcp"
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
    metrics = ServerMetrics(settings.default_tenant)
    notifier = Notifier(
        bus, queue_max=settings.notification_queue_max, stall_seconds=settings.notification_stall_seconds
    )
    ref = ServicesRef()

    async def watched() -> list[Deployment]:
        svc = ref.get()
        return await anyio.to_thread.run_sync(watched_deployments, svc.versions, svc.improvements.store)

    feed = ChangeFeed(notifier.resource_updated, notifier.resources_changed, watched, notifier.tools_changed)

    @asynccontextmanager
    async def lifespan(app: MCPServer) -> AsyncIterator[Services]:
        async with AsyncExitStack() as opened:  # whatever was opened is closed, also when start-up fails part-way
            store = await anyio.to_thread.run_sync(SqliteEventStore, settings.events_db_path)
            opened.callback(store.close)
            raw_store = await anyio.to_thread.run_sync(SqliteTelemetryStore, settings.telemetry_db_path)
            opened.callback(raw_store.close)
            analyst = await anyio.to_thread.run_sync(self_analyst, settings, clock, app)
            opened.callback(analyst.recorder.close)  # writes the calls still buffered
            deployer, versions, audit_log = await anyio.to_thread.run_sync(open_deployer, settings, clock, feed)
            opened.callback(versions.close)
            opened.callback(audit_log.close)
            scratch = await anyio.to_thread.run_sync(open_scratch, settings)  # removes what killed servers left
            opened.callback(scratch.close)
            ledger = await anyio.to_thread.run_sync(SpendLedger, settings.data_dir / "llm_spend.sqlite3", clock)
            opened.callback(ledger.close)
            llm = LLMClient(llm_config(settings), ledger=ledger, audit=audit_log)
            generator, close_generator = generator_factory(llm, settings, validation_stages, scratch.path)
            opened.push_async_callback(_close_generation, llm, close_generator)
            anomalies = AnomalyWatch(history=raw_store, max_series=settings.anomaly_max_series)
            retention = settings.telemetry_retention_days * 86400
            pattern_watch = PatternWatch(
                raw_store, retention_seconds=retention, clock=clock, log_formats=settings.log_formats
            )
            telemetry_store = AnalysingStore(raw_store, anomalies, pattern_watch)
            sampler = Sampler(
                host_source or PsutilHostSource(),
                gpu_source or NvmlGpuSource(),
                max_age=settings.status_max_age_seconds,
                clock=clock,
            )
            opened.callback(sampler.close)
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
            opened.callback(cycles.close)
            attempts = await anyio.to_thread.run_sync(SqliteAttemptArchive, settings.data_dir / "attempts.sqlite3")
            opened.callback(attempts.close)
            runner = CandidateRunner(
                store=cycles,
                deployer=deployer,
                audit=audit_log,
                generator=generator,
                figures=TelemetryFigures(raw_store),
                config=cycle_config(settings),
                clock=clock,
                attempts=attempts,
            )
            improvements = ImprovementService(
                runner,
                LearningOpportunities(learning, analyst.insight_ids),
                ready=partial(cycles_ready, settings, llm),
                autonomous_tenants=tuple(settings.autonomous_tenants or [settings.default_tenant])
                if settings.enable_autonomous_improvements
                else (),
                autonomous_interval_seconds=settings.autonomous_interval_hours * 3600,
            )
            cloudwatch = (
                CloudWatchStreamer(
                    settings.cloudwatch, telemetry_store, clock=clock, on_access=partial(audit_cloudwatch, audit_log)
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
            async with anyio.create_task_group() as task_group:
                await monitor.open(task_group)
                monitor.add_listener(notifier.on_events)
                monitor.add_listener(metrics.on_monitoring_events)
                telemetry_store.stored_listeners.append(metrics.on_stored)
                metrics.services = services
                sampler.add_listener(snapshot_recorder(telemetry_store, settings.default_tenant))
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
                publisher = services.publisher = await _publisher(settings, metrics)
                if publisher is not None:
                    task_group.start_soon(publisher.run)
                if settings.monitoring_autostart:
                    await monitor.start()
                    logger.info("monitoring started (interval %.1fs)", monitor.interval)
                ref.set(services)
                task_group.start_soon(feed.run)
                stop_push = notifier.serve_in(task_group)
                try:
                    yield services
                finally:
                    stop_push()
                    ref.clear()
                    if publisher is not None:
                        await publisher.close()  # the last figures go out (shielded, bounded)
                    await monitor.stop()
                    task_group.cancel_scope.cancel()

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
        middleware=[notifier.track_sessions],
    )
    server.middleware.append(tool_call_observer(server.has_tool, metrics.tool_call))  # needs the server's tools
    server.watched = watched
    server.feed = feed
    server.notifier = notifier
    server.metrics_registry = metrics.registry
    metrics.registry.register(notifier.stats)  # notifications dropped, streams cut
    notifier.install(server)
    add_metrics_route(server, metrics, settings, verifier)
    server.on_http_stop.append(add_dashboard_routes(server, settings, verifier, ref, notifier).streams.stop)
    status.register(server, ref)
    monitoring.register(server, ref)
    performance.register(server)
    scripts.register(server)
    prompts.register(server)
    ingestion.register(server)
    insights.register(server)
    patterns.register(server)
    sources.register(server)
    deployments.register(server, ref)
    audit.register(server)
    generation.register(server)
    improvement.register(server, ref)
    self_analysis.register(server)
    return server


async def _publisher(settings: Settings, metrics: ServerMetrics) -> MetricPublisher | None:
    """The CloudWatch publisher of the server's metrics, when publishing is on (imported only then)."""
    if not settings.enable_cloudwatch_publishing:
        return None
    from server.cloudwatch_publishing import start_publishing

    return await start_publishing(settings, metrics)


async def _close_generation(llm: LLMClient, close_generator: Callable[[], None]) -> None:
    """Stop the code generator's helpers (its mypy worker) and the LLM client, also when the lifespan is cancelled."""
    with anyio.CancelScope(shield=True):
        try:
            await anyio.to_thread.run_sync(close_generator)
        finally:
            await llm.close()
