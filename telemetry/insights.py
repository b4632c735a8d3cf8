"""Insights and improvement opportunities: what the learning engine tells agents and the improvement cycle.

Opportunity impact is ``performance_gain * affected_users * frequency / 100`` with every term a percentage derived
from the data (so impact runs from 0 to 10,000):

* ``performance_gain``: how far the metric has moved in the bad direction, in percent of its baseline, capped at
  100 (restoring the baseline gains that much);
* ``affected_users``: the share of the component's series (its dimension sets: hosts, endpoints, regions) that show
  the problem, in percent - a proxy for the share of users behind them;
* ``frequency``: the share of the recent window's points that are bad (beyond baseline + 3 standard deviations in
  the bad direction), in percent.
"""

from __future__ import annotations

import hashlib
import math
from typing import Literal

from pydantic import BaseModel, Field, field_validator

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
    risk: Risk = Field(description="Risk of changing it.")
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


def risk_for(insights: list[Insight]) -> Risk:
    """Risk of acting: a critical or widespread problem needs a bigger change, and bigger changes risk more."""
    worst = max(SEVERITY_ORDER[i.severity] for i in insights)
    if worst >= SEVERITY_ORDER["critical"]:
        return "high"
    return "medium" if worst >= SEVERITY_ORDER["high"] or len(insights) > 3 else "low"


def allowed(risk: Risk, tolerance: Risk) -> bool:
    return RISK_ORDER[risk] <= RISK_ORDER[tolerance]
