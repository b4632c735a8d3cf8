"""Composition root: ``create_server(settings)`` builds the MCP server; its lifespan owns every service."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Collection
from contextlib import AsyncExitStack, asynccontextmanager
from typing import TYPE_CHECKING

import anyio
from mcp.server.mcpserver import MCPServer, RequestStateSecurity
from mcp.server.subscriptions import InMemorySubscriptionBus

from generators.deploy import Deployment
from server import __version__
from server.auth import auth_settings, key_verifier
from server.change_feed import ChangeFeed, watched_deployments
from server.dashboard import add_dashboard_routes
from server.lifespan import StandIns, open_services, start_services
from server.live_resources import SelfBuildingServer
from server.metrics import ServerMetrics
from server.metrics_route import add_metrics_route
from server.notifications import Notifier
from server.settings import Settings
from telemetry.clock import Clock, SystemClock
from telemetry.host.gpu import GpuSource
from telemetry.host.system import HostSource
from tools import (
    audit,
    deployments,
    generated_tools,
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
from tools.services import Services, ServicesRef, services_getter

if TYPE_CHECKING:
    from generators.validation import StageName

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
    clock: Clock | None = None,
    validation_stages: Collection[StageName] | None = None,
) -> MCPServer:
    """Build the server. Nothing starts until the lifespan runs (first connection or transport start).

    ``clock`` is the time every service reads and sleeps on (the system's by default; tests pass one they move).
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

    stand_ins = StandIns(host_source, gpu_source, validation_stages)

    @asynccontextmanager
    async def lifespan(app: MCPServer) -> AsyncIterator[Services]:
        async with AsyncExitStack() as opened:  # whatever was opened is closed, also when start-up fails part-way
            parts = await open_services(
                settings, opened, app=app, feed=feed, clock=clock or SystemClock(), sources=stand_ins
            )
            async with anyio.create_task_group() as task_group:
                stop = await start_services(
                    task_group, parts, settings, notifier=notifier, metrics=metrics, feed=feed, ref=ref
                )
                try:
                    yield parts.services
                finally:
                    await stop()
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
        request_state_security=RequestStateSecurity(keys=[settings.request_state_key.get_secret_value()])
        if settings.request_state_key is not None
        else None,
    )
    observer = tool_call_observer(server.has_tool, metrics.tool_call, generated_tenant=server.generated_tenant)
    server.middleware.append(observer)  # needs the server's tools
    server.watched = watched
    server.feed = feed
    server.notifier = notifier
    server.metrics_registry = metrics.registry
    metrics.registry.register(notifier.stats)  # notifications dropped, streams cut
    notifier.install(server)
    add_metrics_route(server, metrics, settings, verifier)
    server.on_http_stop.append(add_dashboard_routes(server, settings, verifier, ref, notifier).streams.stop)
    _register_tools(server, ref)
    return server


def _register_tools(server: MCPServer, ref: ServicesRef) -> None:
    """Every tool group, in the order ``tools/list`` shows them."""
    deps = services_getter(ref)  # each group sees only what its own Needs protocol names
    status.register(server, deps)
    monitoring.register(server, deps)
    performance.register(server, deps)
    scripts.register(server, deps)
    prompts.register(server)
    ingestion.register(server, deps)
    insights.register(server, deps)
    patterns.register(server, deps)
    sources.register(server, deps)
    deployments.register(server, deps)
    audit.register(server, deps)
    generation.register(server, deps)
    improvement.register(server, deps)
    self_analysis.register(server, deps)
    generated_tools.register(server, deps)
