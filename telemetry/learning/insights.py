"""Insights and improvement opportunities: what the learning engine tells agents and the improvement cycle.

Opportunity impact is ``performance_gain * affected_users * frequency / 100`` with every term a percentage derived
from the data (so impact runs from 0 to 10,000):

* ``performance_gain``: how far the metric has moved in the bad direction, in percent of its baseline, capped at
  100 (restoring the baseline gains that much);
* ``affected_users``: the share of the component's series (its dimension sets: hosts, endpoints, regions) that show
  the problem, in percent - a proxy for the share of users behind them;
* ``frequency``: the share of the recent window's points that are bad (beyond baseline + 3 standard deviations in
  the bad direction), in percent.

Insights are ranked by :func:`rank_key`: severity first; at equal severity a tenant's own telemetry (pushed or
fetched) before the server's own host and GPU samples (source ``local``: the machine doing the watching, not the
systems watched); then by impact (the insight's own gain times its frequency); then the newest first.
"""

from __future__ import annotations

import hashlib
import math
from typing import Literal

from pydantic import BaseModel, Field, field_validator

from telemetry.host.points import LOCAL_SOURCE

InsightKind = Literal["trend", "degradation", "anomaly", "error_pattern"]
Severity = Literal["low", "medium", "high", "critical"]
Risk = Literal["low", "medium", "high"]
RISK_ORDER: dict[Risk, int] = {"low": 0, "medium": 1, "high": 2}
SEVERITY_ORDER: dict[Severity, int] = {"low": 0, "medium": 1, "high": 2, "critical": 3}


class Insight(BaseModel):
    id: str = Field(description="Stable id of the finding.")
    kind: InsightKind = Field(description="Kind of finding.")
    severity: Severity = Field(description="Severity.")
    tenant: str = Field(description="Tenant the data belongs to.")
    metric: str | None = Field(None, description="Metric, if any.")
    dimensions: dict[str, str] = Field(default_factory=dict, description="Dimensions of the series.")
    component: str | None = Field(None, description="Component it points at.")
    source: str | None = Field(None, description="Its data's source; local: this server's own.")
    summary: str = Field(description="One line for a human.")
    evidence: dict[str, float | str | None] = Field(
        description="Figures behind it; null: none (change_percent on a zero baseline)."
    )
    detected_at: float = Field(description="Unix time of its newest point.")

    @field_validator("evidence")
    @classmethod
    def _finite(cls, evidence: dict[str, float | str | None]) -> dict[str, float | str | None]:
        """A figure that is not a finite number (overflow, a ratio to zero) has no value: JSON cannot carry it."""
        return {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in evidence.items()}


class Opportunity(BaseModel):
    component: str = Field(description="Component to change.")
    metric: str = Field(description="Metric a fix must move.")
    goal: str = Field(description="Goal, in words.")
    impact_score: float = Field(description="performance_gain * affected_users * frequency / 100 (0-10,000).")
    performance_gain: float = Field(description="% worse than baseline (max 100).")
    affected_users: float = Field(description="% of its series affected.")
    frequency: float = Field(description="% of recent points bad.")
    risk: Risk = Field(description="Severity of the problem.")
    insight_ids: list[str] = Field(description="Insights behind it.")


class InsightSummary(BaseModel):
    total: int = Field(description="Insights found in the window.")
    by_kind: dict[str, int] = Field(description="Insights per kind.")
    by_severity: dict[str, int] = Field(description="Insights per severity.")
    series_analysed: int = Field(description="Metric series looked at.")
    logs_analysed: int = Field(description="Log records looked at.")


def insight_id(kind: str, tenant: str, subject: str) -> str:
    """A short stable id for one finding about one subject."""
    return hashlib.sha256(f"{kind}|{tenant}|{subject}".encode()).hexdigest()[:16]


def severity_for_change(change_percent: float) -> Severity:
    """Severity of a worsening by its size."""
    size = abs(change_percent)
    return "critical" if size >= 100 else "high" if size >= 50 else "medium" if size >= 25 else "low"


def severity_for_shift(change_percent: float, z_score: float) -> Severity:
    """Severity of a level shift: the lesser of its size against the baseline's level and against its spread.

    Both must be large for a high severity: a big percentage that stays within a noisy baseline's usual swings is
    noise, and a shift of many standard deviations that is a few percent of the level is small.
    """
    by_level = severity_for_change(change_percent)
    by_spread = _severity_for_spread(abs(z_score))
    return by_level if SEVERITY_ORDER[by_level] <= SEVERITY_ORDER[by_spread] else by_spread


def _severity_for_spread(sigmas: float) -> Severity:
    # Chebyshev: whatever the baseline's distribution, at most 1/k² of it lies k standard deviations from its mean.
    # A recent level 10 of them away is where at most 1 % of the baseline ever was, 5 away 4 %; closer (a degradation
    # is at least 3 away, 11 %) it may be the baseline's own tail, so it is not more than medium.
    return "critical" if sigmas >= 10 else "high" if sigmas >= 5 else "medium"


def performance_gain(insight: Insight) -> float:
    """How far the metric moved in the bad direction, % of its baseline, capped at 100."""
    value = insight.evidence.get("change_percent", insight.evidence.get("relative_change_percent", 0.0))
    if value is None:  # a worsening from a zero baseline: all of the metric's value is the gain to make
        return 100.0
    return min(100.0, abs(float(value)))


def bad_share(insight: Insight) -> float:
    """Share of the recent points that are bad, %."""
    # A trend is bad at every recent point by construction; other kinds say how often.
    value = insight.evidence.get("bad_share_percent", 100.0 if insight.kind == "trend" else 0.0)
    return float(value) if value is not None else 0.0


def rank_key(insight: Insight) -> tuple[int, int, float, float]:
    """Sort key of the insights list (see the module docstring)."""
    own = 1 if insight.source == LOCAL_SOURCE else 0
    return (
        -SEVERITY_ORDER[insight.severity],
        own,
        -performance_gain(insight) * bad_share(insight),
        -insight.detected_at,
    )


def risk_for(insights: list[Insight]) -> Risk:
    """How severe an opportunity's problem is (its ``risk`` field, kept under that name for the insights tool's
    ``risk_tolerance``): a critical or widespread problem is high. The improvement cycle no longer filters by it:
    it judges the risk of a change by what the change can break (generators/improvement/risk.py)."""
    worst = max(SEVERITY_ORDER[i.severity] for i in insights)
    if worst >= SEVERITY_ORDER["critical"]:
        return "high"
    return "medium" if worst >= SEVERITY_ORDER["high"] or len(insights) > 3 else "low"


def allowed(risk: Risk, tolerance: Risk) -> bool:
    return RISK_ORDER[risk] <= RISK_ORDER[tolerance]
