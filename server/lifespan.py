"""What the server's lifespan opens, starts and stops: every store and service, in an order that closes cleanly.

:func:`open_services` opens the stores and builds the services on an :class:`~contextlib.AsyncExitStack`, so that
whatever was opened is closed, also when start-up fails part-way. :func:`start_services` starts their background
work in a task group and returns the coroutine that stops it again.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Collection
from contextlib import AsyncExitStack
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

import anyio
from anyio.abc import TaskGroup
from mcp.server.mcpserver import MCPServer

from generators.changes import ChangeService, ComponentService
from generators.improvement.candidate import CandidateRunner
from generators.improvement.cycle import ImprovementService
from generators.llm import LLMClient
from generators.remediation import ScriptGenerator
from generators.validation.jail import Jail, JailStatus, report
from server import __version__
from server.builders import (
    audit_cloudwatch,
    cycle_config,
    cycles_ready,
    generator_factory,
    jail_from,
    open_deployer,
    open_generated_tools,
    open_scratch,
    self_analyst,
    snapshot_recorder,
)
from server.change_feed import ChangeFeed, NotifyingVersionStore, ObservedCycleStore
from server.databases import Databases
from server.improvement_wiring import LearningOpportunities, TelemetryFigures, alarm_listener
from server.leadership import Lease
from server.metrics import ServerMetrics
from server.notifications import Notifier
from server.settings import Settings
from server.settings_load import llm_config
from telemetry.clock import Clock
from telemetry.cloudwatch.streamer import CloudWatchStreamer
from telemetry.host.gpu import GpuSource, NvmlGpuSource
from telemetry.host.sampler import Sampler
from telemetry.host.system import HostSource, PsutilHostSource
from telemetry.learning.analysis_process import AnalysisProcess
from telemetry.learning.engine import LearningEngine
from telemetry.learning.live import AnalysingStore, AnomalyWatch, PatternWatch
from telemetry.learning.live.anomaly_watch import anomaly_insights
from telemetry.learning.live.detection_queue import DetectionQueue
from telemetry.monitoring.monitor import Monitor
from telemetry.store.retention import prune_forever, prune_once
from tools import generated_tools
from tools.services import Services, ServicesRef

if TYPE_CHECKING:
    from generators.codegen.generation import CodeGenerator
    from generators.deploy import Deployer
    from generators.deploy.audit import AuditLog
    from generators.toolhost import GeneratedTools
    from generators.validation import StageName
    from server.replicas import ReplicaChanges
    from telemetry.cloudwatch.publisher import MetricPublisher
    from telemetry.monitoring.events import EventStore
    from telemetry.selfcheck.insights import SelfAnalyst
    from telemetry.store.records import TelemetryStore

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class StandIns:
    """What the caller of ``create_server`` may put in place of the real thing (tests: fakes)."""

    host: HostSource | None = None
    gpu: GpuSource | None = None
    validation_stages: Collection[StageName] | None = None


@dataclass(slots=True)
class Opened:
    """The services, and the parts of them that start-up wires together."""

    services: Services
    store: AnalysingStore
    analyst: SelfAnalyst
    lease: Lease | None  # several replicas on PostgreSQL: which one runs the background work


@dataclass(frozen=True, slots=True)
class _Stores:
    """The stores and the code generator, opened first: everything else is built on them."""

    events: EventStore
    raw: TelemetryStore
    analyst: SelfAnalyst
    deployer: Deployer
    versions: NotifyingVersionStore
    audit: AuditLog
    llm: LLMClient
    generator: Callable[[], CodeGenerator]
    jail: Jail
    sandbox: JailStatus
    databases: Databases


async def open_services(
    settings: Settings,
    opened: AsyncExitStack,
    *,
    app: MCPServer,
    feed: ChangeFeed,
    clock: Clock,
    sources: StandIns,
) -> Opened:
    """Open every store and build every service; each is closed by ``opened`` (the latest first)."""
    stores = await _open_stores(settings, opened, app=app, feed=feed, clock=clock, sources=sources)
    detections, child = _detectors(settings, opened, stores)
    retention = settings.telemetry_retention_days * 86400
    patterns = PatternWatch(stores.raw, retention_seconds=retention, clock=clock, log_formats=settings.log_formats)
    store = AnalysingStore(stores.raw, detections, patterns)
    sampler = Sampler(
        sources.host or PsutilHostSource(),
        sources.gpu or NvmlGpuSource(),
        max_age=settings.status_max_age_seconds,
        clock=clock,
    )
    opened.callback(sampler.close)
    monitor = Monitor(
        sampler,
        stores.events,
        interval=settings.monitoring_interval_seconds,
        max_events=settings.events_max_count,
        max_age_seconds=settings.events_max_age_days * 86400,
        clock=clock,
    )
    learning = LearningEngine(
        stores.raw,
        analysers=[partial(anomaly_insights, store), patterns.insights, stores.analyst.insights],
        clock=clock,
        series=child.series_findings_or(LearningEngine(stores.raw, clock=clock).series_findings) if child else None,
    )
    generated = await open_generated_tools(
        settings, opened, app, feed, stores.versions, stores.audit, stores.jail, clock, stores.databases.tools
    )
    stores.analyst.owners = partial(generated_tools.owners, generated)  # their findings are their tenants'
    improvements = await _improvement_service(settings, opened, stores, learning, generated, feed=feed, clock=clock)
    changes = ChangeService(stores.deployer, stores.versions, stores.audit)
    components = ComponentService(stores.generator, stores.deployer, stores.audit)
    changes.on_decision(improvements.after_decision)  # a cycle monitors its approved change, settles a rejected one
    cloudwatch = (
        CloudWatchStreamer(settings.cloudwatch, store, clock=clock, on_access=partial(audit_cloudwatch, stores.audit))
        if settings.enable_cloudwatch_streaming
        else None
    )
    services = Services(
        analyses=anyio.CapacityLimiter(settings.analysis_max_concurrency),
        version=__version__,
        started_at=clock(),
        sampler=sampler,
        monitor=monitor,
        scripts=ScriptGenerator(),
        scripts_dir=settings.scripts_dir,
        telemetry=store,
        learning=learning,
        cloudwatch=cloudwatch,
        default_tenant=settings.default_tenant,
        patterns=patterns,
        detections=detections,
        analysis_process=child,
        deployer=stores.deployer,
        versions=stores.versions,
        changes=changes,
        components=components,
        audit=stores.audit,
        llm=stores.llm,
        generator=stores.generator,
        improvements=improvements,
        improvement_wait_seconds=settings.improvement_wait_seconds,
        self_building_enabled=settings.enable_self_building,
        component_generation_enabled=settings.enable_component_generation,
        clock=clock,
        retention_seconds=retention,
        self_analyst=stores.analyst,
        sandbox=stores.sandbox,
        generated_tools=generated,
    )
    lease = None
    if settings.database_url is not None:
        lease = Lease(settings.database_url.get_secret_value(), seconds=settings.lease_seconds,
                      replica=stores.databases.replica)  # fmt: skip
    return Opened(services, store, stores.analyst, lease)


def _detectors(
    settings: Settings, opened: AsyncExitStack, stores: _Stores
) -> tuple[DetectionQueue, AnalysisProcess | None]:
    """The anomaly detectors behind their queue, and the analysis process that runs them and insights' per-series
    analysis (the default), or ``None``: both in this process."""
    child = None
    if settings.analysis_process:
        child = AnalysisProcess(stores.databases.telemetry_address(), max_series=settings.anomaly_max_series)
        opened.callback(child.close)  # after the queue below has judged what it holds
        detect = child.observe
    else:
        detect = AnomalyWatch(history=stores.raw, max_series=settings.anomaly_max_series).observe
    queue = DetectionQueue(detect, stores.raw.add_events)
    opened.callback(queue.close)
    return queue, child


async def _open_stores(
    settings: Settings,
    opened: AsyncExitStack,
    *,
    app: MCPServer,
    feed: ChangeFeed,
    clock: Clock,
    sources: StandIns,
) -> _Stores:
    databases = Databases(settings)
    await databases.open(opened)  # PostgreSQL's pools (closed after every store: registered first)
    events = await anyio.to_thread.run_sync(databases.events)
    opened.callback(events.close)
    raw = await anyio.to_thread.run_sync(databases.telemetry)
    opened.callback(raw.close)
    analyst = await anyio.to_thread.run_sync(self_analyst, settings, clock, app, databases.calls)
    opened.callback(analyst.recorder.close)  # writes the calls still buffered
    deployer, versions, audit_log = await anyio.to_thread.run_sync(open_deployer, settings, clock, feed, databases)
    opened.callback(versions.close)
    opened.callback(audit_log.close)
    scratch = await anyio.to_thread.run_sync(open_scratch, settings)  # removes what killed servers left
    opened.callback(scratch.close)
    ledger = await anyio.to_thread.run_sync(databases.ledger, clock)
    opened.callback(ledger.close)
    llm = LLMClient(llm_config(settings), ledger=ledger, audit=audit_log)
    jail = jail_from(settings)
    sandbox = await anyio.to_thread.run_sync(jail.status, scratch.path)  # a real start of the jail, once
    report(sandbox)
    jobs = await anyio.to_thread.run_sync(databases.jobs)  # validation on workers (PostgreSQL, when asked for)
    generator, close_generator = generator_factory(llm, settings, sources.validation_stages, scratch.path, jail, jobs)
    opened.push_async_callback(_close_generation, llm, close_generator)
    return _Stores(events, raw, analyst, deployer, versions, audit_log, llm, generator, jail, sandbox, databases)


async def _improvement_service(
    settings: Settings,
    opened: AsyncExitStack,
    stores: _Stores,
    learning: LearningEngine,
    generated: GeneratedTools,
    *,
    feed: ChangeFeed,
    clock: Clock,
) -> ImprovementService:
    cycles = ObservedCycleStore(await anyio.to_thread.run_sync(stores.databases.cycles), feed)
    opened.callback(cycles.close)
    attempts = await anyio.to_thread.run_sync(stores.databases.attempts)
    opened.callback(attempts.close)
    runner = CandidateRunner(
        store=cycles,
        deployer=stores.deployer,
        audit=stores.audit,
        generator=stores.generator,
        figures=TelemetryFigures(stores.raw, calls=stores.analyst.call_values),  # a generated tool's: its calls
        config=cycle_config(settings),
        clock=clock,
        attempts=attempts,
        component_type_of=generated.component_type_of,
    )
    return ImprovementService(
        runner,
        LearningOpportunities(learning, stores.analyst.insight_ids),
        ready=partial(cycles_ready, settings, stores.llm),
        autonomous_tenants=tuple(settings.autonomous_tenants or [settings.default_tenant])
        if settings.enable_autonomous_improvements
        else (),
        autonomous_interval_seconds=settings.autonomous_interval_hours * 3600,
    )


async def start_services(
    task_group: TaskGroup,
    parts: Opened,
    settings: Settings,
    *,
    notifier: Notifier,
    metrics: ServerMetrics,
    feed: ChangeFeed,
    ref: ServicesRef,
) -> Callable[[], Awaitable[None]]:
    """Wire the services' listeners and start their background work in ``task_group``; returns the coroutine that
    stops what must stop before the task group is cancelled."""
    services, store, analyst = parts.services, parts.store, parts.analyst
    monitor, improvements, cloudwatch = services.monitor, services.improvements, services.cloudwatch
    retention, clock = services.retention_seconds, services.clock
    await monitor.open(task_group)
    monitor.add_listener(notifier.on_events)
    monitor.add_listener(metrics.on_monitoring_events)
    store.stored_listeners.append(metrics.on_stored)
    metrics.services = services
    services.sampler.add_listener(snapshot_recorder(store, settings.default_tenant))
    lease = parts.lease
    await improvements.open(task_group, lead=lease is None)
    store.event_listeners.append(alarm_listener(settings.critical_alarms, improvements.request_emergency))
    await prune_once(store, retention, clock)
    task_group.start_soon(analyst.recorder.run)
    if cloudwatch is not None and not settings.cloudwatch.watches_anything:
        logger.warning("CloudWatch streaming is on but nothing is configured to watch")

    background = _background(parts, settings)
    if lease is None:
        await background(task_group)
    else:
        task_group.start_soon(lease.run, background)
        with anyio.move_on_after(lease.seconds):  # serve once this replica knows whether it leads (and, if it does,
            await lease.ready.wait()  # has adopted what stopped replicas left), as one server does at start
    publisher = services.publisher = await _publisher(settings, metrics)
    if publisher is not None:
        task_group.start_soon(publisher.run)
    if settings.monitoring_autostart:
        await monitor.start()
        logger.info("monitoring started (interval %.1fs)", monitor.interval)
    ref.set(services)
    task_group.start_soon(feed.run)
    replicas = _replica_changes(settings, feed, task_group)
    stop_push = notifier.serve_in(task_group)

    async def stop() -> None:
        stop_push()
        ref.clear()
        if replicas is not None:
            feed.on_local = None
            with anyio.CancelScope(shield=True):
                await replicas.close()
        if publisher is not None:
            await publisher.close()  # the last figures go out (shielded, bounded)
        await monitor.stop()

    return stop


def _background(parts: Opened, settings: Settings) -> Callable[[TaskGroup], Awaitable[None]]:
    """What starts the work that runs once however many replicas there are (on the lease holder, with several)."""
    services, lease = parts.services, parts.lease

    async def background(group: TaskGroup) -> None:
        group.start_soon(partial(prune_forever, parts.store, services.retention_seconds, clock=services.clock))
        if settings.self_analysis_interval_hours > 0:
            group.start_soon(parts.analyst.run)
        if services.cloudwatch is not None:
            group.start_soon(services.cloudwatch.run)
        if lease is not None:
            await services.improvements.take_over(await lease.alive())  # before this replica serves (see ready)
            group.start_soon(services.improvements.lead, group, lease.alive, lease.beat)

    return background


def _replica_changes(settings: Settings, feed: ChangeFeed, task_group: TaskGroup) -> ReplicaChanges | None:
    """On PostgreSQL, the changes made here go to the other replicas, and theirs are published here."""
    if settings.database_url is None:
        return None
    from server.replicas import ReplicaChanges

    replicas = ReplicaChanges(settings.database_url.get_secret_value(), feed)
    feed.on_local = replicas.send
    task_group.start_soon(replicas.listen)
    return replicas


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
