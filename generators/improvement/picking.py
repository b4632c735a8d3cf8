"""Which opportunities a cycle acts on, and why it leaves out each of the others.

In rank order (highest impact first), an opportunity is left out when, checked in this order:

* ``same_component``: a higher-ranked opportunity of the same component was considered (one change per component
  per cycle);
* ``no_module``: the component has no module in the workspace;
* ``risk_above_tolerance``: the risk of changing its module (see :mod:`generators.improvement.risk`) is above the
  caller's ``risk_tolerance``;
* ``busy``: another cycle is working on the component;
* ``beyond_max_improvements``: ``max_improvements`` opportunities were picked before it.

Every other one is picked.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from generators.deploy import VersionStore
from generators.improvement.models import (
    CandidateDetail,
    CandidateRecord,
    LeftOutEntry,
    LeftOutReason,
    Opportunity,
    Risk,
)
from generators.improvement.risk import ROLLBACK_MEMORY_SECONDS, RiskAssessment, allowed

MAX_LEFT_OUT = 50  # left-out opportunities kept with a cycle (the total is kept too)
MAX_ROLLBACKS_READ = 500  # a tenant's newest rolled-back deployments read for the risk of a change


def busy_key(tenant: str, component: str) -> tuple[str, str]:
    """One component, however its name is spelt (``my-comp`` and ``my_comp`` are one module)."""
    return tenant, component.replace("-", "_")


def recent_rollbacks(versions: VersionStore, tenant: str, component: str, now: float) -> int:
    """Changes of the component rolled back within the risk's memory (blocking): each raises its next change's risk."""
    found, _ = versions.list(tenant, "rolled_back", MAX_ROLLBACKS_READ)
    since, key = now - ROLLBACK_MEMORY_SECONDS, busy_key(tenant, component)
    return sum(1 for d in found if busy_key(tenant, d.component) == key and d.updated_at >= since)


@dataclass(frozen=True, slots=True)
class Picked:
    opportunity: Opportunity
    module: str
    risk: RiskAssessment

    def candidate(self, cycle_id: str, position: int, now: float) -> CandidateRecord:
        """The queued candidate of this opportunity."""
        found = self.opportunity
        return CandidateRecord(cycle_id, position, found.component, found.metric, "queued", now, detail=self.detail())

    def detail(self) -> CandidateDetail:
        """What a candidate record keeps of its opportunity."""
        opportunity = self.opportunity
        return {
            "goal": opportunity.goal,
            "impact_score": opportunity.impact_score,
            "severity": opportunity.severity,
            "risk": self.risk.level,
            "risk_factors": self.risk.factors,
            "risk_reasons": list(self.risk.reasons),
            "module": self.module,
            "direction": opportunity.direction,
            "evidence": opportunity.evidence,
            "insight_ids": list(opportunity.insight_ids),
        }


@dataclass(frozen=True, slots=True)
class LeftOut:
    opportunity: Opportunity
    reason: LeftOutReason
    message: str
    risk: RiskAssessment | None

    def to_dict(self) -> LeftOutEntry:
        return {
            "component": self.opportunity.component,
            "metric": self.opportunity.metric,
            "impact_score": self.opportunity.impact_score,
            "reason": self.reason,
            "message": self.message,
            "risk": self.risk.level if self.risk else None,
            "risk_factors": self.risk.factors if self.risk else {},
        }


def select(
    assessed: list[tuple[Opportunity, str | None, RiskAssessment | None]],
    *,
    max_improvements: int,
    tolerance: Risk,
    busy: Callable[[Opportunity], bool],
    no_module: Callable[[Opportunity], str],
) -> tuple[list[Picked], list[LeftOut]]:
    """Pick from ``assessed`` (in rank order, as :func:`~generators.improvement.risk.assess_risks` returns it)."""
    picked: list[Picked] = []
    left: list[LeftOut] = []
    first: dict[tuple[str, str], Opportunity] = {}
    for opportunity, module, risk in assessed:
        key = busy_key("", opportunity.component)
        if key in first:
            why = f"one change per component per cycle: its {first[key].metric} opportunity ranks higher"
            left.append(LeftOut(opportunity, "same_component", why, risk))
            continue
        first[key] = opportunity
        if module is None or risk is None:
            left.append(LeftOut(opportunity, "no_module", no_module(opportunity), None))
        elif not allowed(risk.level, tolerance):
            why = f"risk {risk.level} is above the tolerance {tolerance}: {'; '.join(risk.reasons)}"
            left.append(LeftOut(opportunity, "risk_above_tolerance", why, risk))
        elif busy(opportunity):
            left.append(LeftOut(opportunity, "busy", "another cycle is working on this component", risk))
        elif len(picked) >= max_improvements:
            why = f"max_improvements is {max_improvements} and {len(picked)} higher-ranked opportunities were picked"
            left.append(LeftOut(opportunity, "beyond_max_improvements", why, risk))
        else:
            picked.append(Picked(opportunity, module, risk))
    return picked, left
