"""Records and seams of the improvement cycle.

``generators`` does not import ``telemetry``: the opportunities and the figures of a component's metric come in
through the :class:`OpportunitySource` and :class:`MetricFigures` Protocols, which the server wires to the learning
engine and the telemetry store.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

Direction = Literal["up_is_bad", "down_is_bad", "neutral"]
Risk = Literal["low", "medium", "high"]
OpportunityKind = Literal["metric", "errors"]
CycleStatus = Literal["running", "completed", "interrupted", "failed"]
CycleTrigger = Literal["manual", "autonomous", "emergency"]
CandidateStatus = Literal[
    "queued",
    "generating",
    "validation_failed",
    "skipped",
    "dry_run",
    "pending_approval",
    "rejected",
    "deploying",
    "deploy_failed",
    "monitoring",
    "kept",
    "rolled_back",
    "regressed",  # worse after the change, but automatic rollback is off
    "error",
    "interrupted",
]


@dataclass(frozen=True, slots=True)
class Target:
    """One improvement opportunity, as the cycle needs it."""

    component: str
    metric: str
    goal: str
    impact_score: float
    risk: Risk
    direction: Direction = "up_is_bad"
    evidence: str = ""
    insight_ids: tuple[str, ...] = ()
    own_code: bool = False  # the server's own module (from its self-analysis), named ``package.module[.function]``
    # "errors": born of an error pattern in the component's logs (a fix must be proved by a reproducing test);
    # "metric": a measured figure (latency, CPU, ...) to move in ``direction``.
    kind: OpportunityKind = "metric"


class OpportunitySource(Protocol):
    """Ranked opportunities of a tenant's window (highest impact first), optionally for one component."""

    def __call__(self, tenant: str, window_hours: float, risk_tolerance: Risk, component: str | None) -> list[Target]:
        """Blocking: called in a worker thread."""
        ...


class MetricFigures(Protocol):
    """What the telemetry store knows about a component in a time window. Blocking: called in a worker thread."""

    def metric_mean(self, tenant: str, component: str, metric: str, start: float, end: float) -> tuple[float, int]:
        """Mean and number of points of ``metric`` for ``component`` in [start, end] (0, 0 without points)."""
        ...

    def error_count(self, tenant: str, component: str, start: float, end: float) -> int | None:
        """Error log lines of ``component`` in [start, end]; ``None`` when too many lines to count."""
        ...


@dataclass(frozen=True, slots=True)
class CycleConfig:
    """How cycles run (from the settings)."""

    monitoring_seconds: float = 3600.0
    regression_percent: float = 10.0
    benchmark_runs: int = 5  # runs per side before the first statistical test
    benchmark_max_runs: int = 20  # most runs per side when the first ones cannot tell
    confidence: float = 0.95  # a verdict of better or worse needs this confidence
    min_effect_percent: float = 5.0  # the smallest improvement of the opportunity's metric that counts
    candidates_per_opportunity: int = 1
    benchmark_timeout_seconds: float = 120.0
    max_concurrency: int = 2
    rollback_enabled: bool = True
    review_required: bool = False
    review_components: frozenset[str] = frozenset()
    shared_packages: frozenset[str] = frozenset({"shared", "common"})
    default_tenant: str = "default"
    min_points: int = 3  # telemetry points per side before its figures count
    min_errors: int = 3  # error lines after the change before a rising error rate counts


@dataclass(frozen=True, slots=True)
class CycleRequest:
    """What a caller (or the scheduler, or an alarm) asked for."""

    tenant: str
    actor: str
    analysis_window_hours: float = 24.0
    max_improvements: int = 3
    dry_run: bool = False
    risk_tolerance: Risk = "medium"
    trigger: CycleTrigger = "manual"
    component: str | None = None  # only this component (emergency cycles)
    metric: str | None = None  # the alarm's metric (emergency cycles)
    reason: str = ""


@dataclass(slots=True)
class CandidateRecord:
    """One opportunity of a cycle and how far it got."""

    cycle_id: str
    position: int
    component: str
    metric: str
    status: CandidateStatus
    updated_at: float
    deployment_id: str | None = None
    monitor_until: float | None = None
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class CycleRecord:
    """One improvement cycle and its candidates."""

    id: str
    tenant: str
    actor: str
    trigger: CycleTrigger
    status: CycleStatus
    started_at: float
    updated_at: float
    params: dict[str, Any]
    finished_at: float | None = None
    error: str | None = None
    candidates: list[CandidateRecord] = field(default_factory=list)
