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
from generators.improvement.models import CandidateDetail, LeftOutEntry, LeftOutReason, Risk, Target
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
    target: Target
    module: str
    risk: RiskAssessment

    def detail(self) -> CandidateDetail:
        """What a candidate record keeps of its opportunity."""
        target = self.target
        return {
            "goal": target.goal,
            "impact_score": target.impact_score,
            "severity": target.severity,
            "risk": self.risk.level,
            "risk_factors": self.risk.factors,
            "risk_reasons": list(self.risk.reasons),
            "module": self.module,
            "direction": target.direction,
            "evidence": target.evidence,
            "insight_ids": list(target.insight_ids),
        }


@dataclass(frozen=True, slots=True)
class LeftOut:
    target: Target
    reason: LeftOutReason
    message: str
    risk: RiskAssessment | None

    def to_dict(self) -> LeftOutEntry:
        return {
            "component": self.target.component,
            "metric": self.target.metric,
            "impact_score": self.target.impact_score,
            "reason": self.reason,
            "message": self.message,
            "risk": self.risk.level if self.risk else None,
            "risk_factors": self.risk.factors if self.risk else {},
        }


def select(
    assessed: list[tuple[Target, str | None, RiskAssessment | None]],
    *,
    max_improvements: int,
    tolerance: Risk,
    busy: Callable[[Target], bool],
    no_module: Callable[[Target], str],
) -> tuple[list[Picked], list[LeftOut]]:
    """Pick from ``assessed`` (in rank order, as :func:`~generators.improvement.risk.assess_targets` returns it)."""
    picked: list[Picked] = []
    left: list[LeftOut] = []
    first: dict[tuple[str, str], Target] = {}
    for target, module, risk in assessed:
        key = busy_key("", target.component)
        if key in first:
            why = f"one change per component per cycle: its {first[key].metric} opportunity ranks higher"
            left.append(LeftOut(target, "same_component", why, risk))
            continue
        first[key] = target
        if module is None or risk is None:
            left.append(LeftOut(target, "no_module", no_module(target), None))
        elif not allowed(risk.level, tolerance):
            why = f"risk {risk.level} is above the tolerance {tolerance}: {'; '.join(risk.reasons)}"
            left.append(LeftOut(target, "risk_above_tolerance", why, risk))
        elif busy(target):
            left.append(LeftOut(target, "busy", "another cycle is working on this component", risk))
        elif len(picked) >= max_improvements:
            why = f"max_improvements is {max_improvements} and {len(picked)} higher-ranked opportunities were picked"
            left.append(LeftOut(target, "beyond_max_improvements", why, risk))
        else:
            picked.append(Picked(target, module, risk))
    return picked, left
