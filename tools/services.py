"""The services the lifespan builds (:class:`Services`, every one of them) and the reference that reaches them while
it runs. Each tool group names what it uses in its own ``Needs`` protocol and is registered with a getter of those
(``register(server, deps)``, :data:`ServicesOf`): it sees only its own."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

import anyio
from mcp.server.mcpserver import Context

from generators.changes import ChangeService, ComponentService
from generators.deploy import AuditLog, Deployer, VersionStore
from generators.llm import LLMClient
from generators.remediation import ScriptGenerator
from generators.toolhost import GeneratedTools
from generators.validation.jail import JailStatus
from telemetry.clock import Clock, SystemClock
from telemetry.cloudwatch.streamer import CloudWatchStreamer
from telemetry.host.sampler import Sampler
from telemetry.learning.analysis_process import AnalysisProcess
from telemetry.learning.engine import Analysis, LearningEngine
from telemetry.learning.live import PatternWatch
from telemetry.learning.live.detection_queue import DetectionQueue
from telemetry.monitoring.monitor import Monitor
from telemetry.selfcheck.insights import SelfAnalyst
from telemetry.store.records import TelemetryStore
from tools.shared_runs import SharedRuns

if TYPE_CHECKING:
    from generators.codegen.generation import CodeGenerator
    from generators.improvement.cycle import ImprovementService
    from telemetry.cloudwatch.publisher import MetricPublisher


@dataclass
class ToolStats:
    """Tool-call counts and failures since start-up (the server's middleware fills it)."""

    calls: dict[str, int] = field(default_factory=dict)
    failures: dict[str, int] = field(default_factory=dict)

    def record(self, tool: str, failed: bool) -> None:
        self.calls[tool] = self.calls.get(tool, 0) + 1
        if failed:
            self.failures[tool] = self.failures.get(tool, 0) + 1


@dataclass
class Services:
    """Everything the lifespan owns. One instance per process."""

    version: str
    started_at: float
    sampler: Sampler
    monitor: Monitor
    scripts: ScriptGenerator
    scripts_dir: Path
    telemetry: TelemetryStore
    learning: LearningEngine
    cloudwatch: CloudWatchStreamer | None
    default_tenant: str
    patterns: PatternWatch
    detections: DetectionQueue
    analysis_process: AnalysisProcess | None  # None: detectors and analyses in this process
    deployer: Deployer
    versions: VersionStore
    changes: ChangeService
    components: ComponentService
    audit: AuditLog
    llm: LLMClient
    generator: Callable[[], CodeGenerator]  # built on first use: start-up does not import the generation loop
    improvements: ImprovementService
    improvement_wait_seconds: float = 300.0
    self_building_enabled: bool = True
    component_generation_enabled: bool = True
    stats: ToolStats = field(default_factory=ToolStats)
    clock: Clock = field(default_factory=SystemClock)
    retention_seconds: float = 14 * 86400  # telemetry older than this is pruned (and refused at ingest)
    publisher: MetricPublisher | None = None  # the server's own metrics to CloudWatch, when publishing is on
    self_analyst: SelfAnalyst | None = None  # records every tool call and analyses them (analyze_self)
    generated_tools: GeneratedTools | None = None  # the tools the server generated for itself
    sandbox: JailStatus = field(default_factory=lambda: JailStatus("bwrap", False, "not checked yet"))
    # Heavy analyses at once (their worker threads); None: anyio's default limiter, shared with everything else.
    analyses: anyio.CapacityLimiter | None = None
    insight_runs: SharedRuns[Analysis] = field(default_factory=SharedRuns)  # identical insight queries share a run


class ServicesNotRunning(RuntimeError):
    """The server's lifespan has not started yet, or has ended."""


class ServicesRef:
    """Lets static resources (which get no request context) reach the services while the lifespan runs."""

    def __init__(self) -> None:
        self._services: Services | None = None

    def set(self, services: Services) -> None:
        self._services = services

    def clear(self) -> None:
        self._services = None

    def get(self) -> Services:
        if self._services is None:
            raise ServicesNotRunning("the server is not running: its lifespan has not started")
        return self._services


T = TypeVar("T")
ServicesOf: TypeAlias = Callable[[Context[Any, Any] | None], T]
"""How a tool group reaches the services it names: ``deps(ctx)`` in a tool (the request's lifespan), ``deps(None)``
in a resource, which gets no context (the lifespan running now)."""


def services_getter(ref: ServicesRef) -> ServicesOf[Services]:
    """The getter every tool group is registered with."""

    def get(ctx: Context[Any, Any] | None) -> Services:
        if ctx is None:
            return ref.get()
        found: Services = ctx.request_context.lifespan_context
        return found

    return get
