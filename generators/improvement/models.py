"""Records and seams of the improvement cycle.

``generators`` does not import ``telemetry``: the opportunities and the figures of a component's metric come in
through the :class:`OpportunitySource` and :class:`MetricFigures` Protocols, which the server wires to the learning
engine and the telemetry store.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal, Protocol, TypedDict

from generators.errors import IllegalTransitionError

Direction = Literal["up_is_bad", "down_is_bad", "neutral"]
Risk = Literal["low", "medium", "high"]
RISK_ORDER: dict[Risk, int] = {"low": 0, "medium": 1, "high": 2}
OpportunityKind = Literal["metric", "errors"]
# What a cycle's status says (derived from its candidates' outcomes by :func:`cycle_outcome` when its work ends, and
# derived again when a change it held for approval is decided and judged later):
# * running: at work (opportunities, generation, deploys, monitoring);
# * completed: at least one change was kept, validated (a dry run), or is held for approval or still watched;
# * no_improvement: changes were tried and none is kept: refused by validation, rejected, rolled back, worse, not
#   deployable; errors may be among them;
# * failed: every candidate errored (the model could not be asked: unavailable, timed out, a spend cap) or the cycle
#   itself broke (its ``error`` says how);
# * nothing_to_do: no opportunity was acted on: none found, every one left out (``left_out`` says why), or every
#   candidate skipped before the model was asked (its message says why);
# * interrupted: the server stopped while it ran (changes it deployed are still judged after the restart).
CycleStatus = Literal["running", "completed", "no_improvement", "failed", "nothing_to_do", "interrupted"]
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
# Where a candidate may go from each status (saving the same status again, with more detail, is always allowed). A
# status with no way out is final. "interrupted" is also set by the store at start-up (queued or generating when the
# server stopped).
FINAL: Final[tuple[CandidateStatus, ...]] = (
    "validation_failed", "skipped", "dry_run", "rejected", "deploy_failed", "kept", "rolled_back", "regressed",
    "error", "interrupted",
)  # fmt: skip
TRANSITIONS: Final[Mapping[CandidateStatus, frozenset[CandidateStatus]]] = {
    "queued": frozenset({"generating", "skipped", "error", "interrupted"}),
    "generating": frozenset({"skipped", "validation_failed", "dry_run", "deploying", "error", "interrupted"}),
    "deploying": frozenset({"pending_approval", "deploy_failed", "monitoring", "rejected", "error", "interrupted"}),
    "pending_approval": frozenset({"monitoring", "rejected", "error"}),
    "monitoring": frozenset({"kept", "regressed", "rolled_back", "error"}),
    **dict.fromkeys(FINAL, frozenset()),
}


def can_move(record: CandidateRecord, status: CandidateStatus) -> bool:
    """Whether ``record`` may go to ``status`` (see :data:`TRANSITIONS`; its own status again, with more detail)."""
    return status == record.status or status in TRANSITIONS[record.status]


def check_transition(record: CandidateRecord, status: CandidateStatus) -> None:
    """Raise :class:`IllegalTransitionError` unless ``record`` may go to ``status``."""
    if not can_move(record, status):
        raise IllegalTransitionError(
            f"candidate {record.position} of cycle {record.cycle_id} ({record.component}) cannot go from "
            f"{record.status} to {status}"
        )


@dataclass(frozen=True, slots=True)
class Opportunity:
    """One improvement opportunity, as the cycle needs it."""

    component: str
    metric: str
    goal: str
    impact_score: float
    # How bad the problem is (the learning engine's word). It never filters: the cycle judges the risk of a change
    # by its blast radius (see generators.improvement.risk).
    severity: Risk
    direction: Direction = "up_is_bad"
    evidence: str = ""
    insight_ids: tuple[str, ...] = ()
    own_code: bool = False  # the server's own module (from its self-analysis), named ``package.module[.function]``
    # "errors": born of an error pattern in the component's logs (a fix must be proved by a reproducing test);
    # "metric": a measured figure (latency, CPU, ...) to move in ``direction``.
    kind: OpportunityKind = "metric"


class OpportunitySource(Protocol):
    """Ranked opportunities of a tenant's window (highest impact first), optionally for one component; all of them:
    the cycle decides which to act on, and lists the others with the reason."""

    def __call__(self, tenant: str, window_hours: float, component: str | None) -> list[Opportunity]:
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


LeftOutReason = Literal["same_component", "no_module", "risk_above_tolerance", "busy", "beyond_max_improvements"]


class LeftOutEntry(TypedDict):
    """An opportunity a cycle did not act on, and why (kept with the cycle, bounded)."""

    component: str
    metric: str
    impact_score: float
    reason: LeftOutReason
    message: str
    risk: Risk | None
    risk_factors: dict[str, Any]


class CandidateDetail(TypedDict, total=False):
    """What a candidate keeps besides its status, key by key (JSON only inside the SQLite adapter)."""

    # Its opportunity (picking.Picked.detail) and what kind of change it is.
    goal: str
    impact_score: float
    severity: str
    risk: Risk
    risk_factors: dict[str, Any]
    risk_reasons: list[str]
    module: str | None
    direction: Direction
    evidence: str
    insight_ids: list[str]
    kind: OpportunityKind
    # The generation: the attempt chosen, the measured candidates, the proof of an error fix, the rounds.
    attempt: int
    candidates: list[dict[str, Any]]
    proof: dict[str, Any]
    diff: str
    diff_truncated: bool
    validation_passed: bool | None
    validation_text: str
    rounds: list[dict[str, Any]]
    prompt_tokens: int
    completion_tokens: int
    # The deployment and its verdict.
    test_paths: list[str]
    deployed_at: float
    figures: dict[str, Any]
    reasons: list[str]
    decision: str
    # What happened last, in words; the error's type when it failed.
    message: str
    error_type: str


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
    detail: CandidateDetail = field(default_factory=lambda: CandidateDetail())


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
    left_out: list[LeftOutEntry] = field(default_factory=list)  # opportunities not acted on (bounded), and why
    left_out_total: int = 0  # how many were left out in all


# Candidate outcomes that count as the cycle having done its work: a change kept, validated in a dry run, or on its
# way (held for an approver, being deployed or watched: the cycle's status is derived again once it is judged).
DONE: frozenset[CandidateStatus] = frozenset({"kept", "dry_run", "pending_approval", "deploying", "monitoring"})
ERRORED: frozenset[CandidateStatus] = frozenset({"error", "interrupted", "queued", "generating"})


def outcome_counts(candidates: list[CandidateRecord]) -> dict[str, int]:
    """How many candidates ended (or stand) in each status, e.g. ``{"kept": 1, "error": 2}``."""
    counts: dict[str, int] = {}
    for candidate in candidates:
        counts[candidate.status] = counts.get(candidate.status, 0) + 1
    return dict(sorted(counts.items()))


def cycle_outcome(candidates: list[CandidateRecord]) -> CycleStatus:
    """The status of a cycle whose work has ended (see :data:`CycleStatus`)."""
    if not candidates:
        return "nothing_to_do"
    statuses = {c.status for c in candidates}
    if statuses & DONE:
        return "completed"
    if statuses <= ERRORED | {"skipped"}:  # no candidate got an answer from the model
        return "failed" if statuses & ERRORED else "nothing_to_do"
    return "no_improvement"


def emergency_opportunity(request: CycleRequest) -> Opportunity:
    """What an emergency cycle (a critical alarm's) works on: the alarm's component and metric."""
    assert request.component is not None
    metric = request.metric or "errors"
    return Opportunity(request.component, metric, f"resolve {request.reason}", 0.0, "high", evidence=request.reason)
