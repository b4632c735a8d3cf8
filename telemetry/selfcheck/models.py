"""The shape of the server's analysis of its own tool calls (see :mod:`telemetry.selfcheck.analysis`)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

from pydantic import BaseModel, Field

Priority = Literal["high", "medium", "low"]
AnomalyKind = Literal["slow_tool", "latency_regression", "failing_tool", "error_rate_increase"]


class ToolOwner(NamedTuple):
    """A tool the server generated for a tenant: that tenant, and the component (workspace module) it is served
    from. Its calls and findings belong to that tenant and component, never to the server's own code."""

    tenant: str
    component: str
    served: bool = True  # False: removed (its recorded calls stay its tenant's; it makes no more findings)


class ToolUsage(BaseModel):
    tool: str = Field(description="Tool name.")
    calls: int = Field(description="Calls.")
    share_percent: float = Field(description="% of all calls.")


class CallerUsage(BaseModel):
    caller: str = Field(description="Key name ('local' over stdio).")
    calls: int = Field(description="Calls.")
    share_percent: float = Field(description="% of all calls.")


class DecisionPatterns(BaseModel):
    total_calls: int = Field(description="Calls analysed.")
    distinct_tools: int = Field(description="Tools called.")
    diversity_score: float = Field(
        description="Shannon entropy over the tools used, normalised: 0 one tool, 1 all used equally."
    )
    tools: list[ToolUsage] = Field(description="Most used first.")
    tools_has_more: bool = Field(description="True: more than listed.")
    callers: list[CallerUsage] = Field(description="Most active first.")
    callers_has_more: bool = Field(description="True: more than listed.")


class ToolTiming(BaseModel):
    tool: str = Field(description="Tool name.")
    calls: int = Field(description="Calls.")
    mean_ms: float = Field(description="Mean, ms.")
    p50_ms: float = Field(description="Median, ms.")
    p95_ms: float = Field(description="95th percentile, ms.")
    max_ms: float = Field(description="Longest, ms.")


class ToolFailures(BaseModel):
    tool: str = Field(description="Tool name.")
    calls: int = Field(description="Calls.")
    errors: int = Field(description="Failed calls.")
    error_rate_percent: float = Field(description="errors / calls, %.")
    by_kind: dict[str, int] = Field(description="Errors per kind.")


class FailurePair(BaseModel):
    tool: str = Field(description="Tool name.")
    error_kind: str = Field(description="Error kind (see by_kind).")
    count: int = Field(description="Errors.")


class FailurePatterns(BaseModel):
    total_errors: int = Field(description="Failed calls.")
    error_rate_percent: float = Field(description="% of calls failed.")
    by_kind: dict[str, int] = Field(description="Errors per kind.")
    tools: list[ToolFailures] = Field(description="Most errors first.")
    tools_has_more: bool = Field(description="True: more than listed.")
    top_pairs: list[FailurePair] = Field(description="Most frequent (tool, kind) pairs.")


class BiasFinding(BaseModel):
    subject: Literal["tool", "caller"] = Field(description="What dominates.")
    name: str = Field(description="Its name.")
    calls: int = Field(description="Its calls.")
    share_percent: float = Field(description="% of all calls.")
    summary: str = Field(description="One line for a human.")


class Anomaly(BaseModel):
    kind: AnomalyKind = Field(description="What is wrong.")
    tool: str = Field(description="Tool name.")
    component: str | None = Field(description="Module and function behind the tool.")
    severity: Literal["low", "medium", "high", "critical"] = Field(description="How bad it is.")
    summary: str = Field(description="One line for a human.")
    evidence: dict[str, float | str] = Field(description="The figures behind it.")


class Suggestion(BaseModel):
    priority: Priority = Field(description="high, medium or low.")
    tool: str = Field(description="Tool.")
    component: str | None = Field(description="Module and function to change.")
    action: str = Field(description="What to do.")
    evidence: str = Field(description="Figures behind it.")
    expected_impact: str = Field(description="Expected gain, in words.")
    expected_gain_percent: float = Field(description="Expected cut in latency or failures, %.")
    calls_per_day: float = Field(description="Calls per day that gain (extrapolated).")


class SelfReport(BaseModel):
    window_start: float = Field(description="Unix time of the start.")
    window_end: float = Field(description="Unix time of the end (now).")
    lookback_hours: float = Field(description="Hours.")
    tenants: list[str] | None = Field(description="Tenants analysed (null: all).")
    calls_in_window: int = Field(description="Calls in the window.")
    calls_analysed: int = Field(description="Calls analysed (the newest).")
    truncated: bool = Field(description="True: not all were analysed.")
    decision_patterns: DecisionPatterns = Field(description="Who called what.")
    execution_times: list[ToolTiming] = Field(description="Per tool, slowest p95 first.")
    execution_times_has_more: bool = Field(description="True: more than listed.")
    failure_patterns: FailurePatterns = Field(description="Errors by tool and kind.")
    bias: list[BiasFinding] = Field(description="A tool or caller taking most calls.")
    anomalies: list[Anomaly] = Field(description="Slow or failing tools, worst first.")
    anomalies_has_more: bool = Field(description="True: more than listed.")
    suggestions: list[Suggestion] = Field(description="Highest priority first.")
    suggestions_has_more: bool = Field(description="True: more than listed.")


@dataclass(slots=True)
class ToolFigures:
    """Everything the analysis needs about one tool's calls."""

    durations: list[float] = field(default_factory=list)
    recent: list[float] = field(default_factory=list)
    earlier: list[float] = field(default_factory=list)
    errors: int = 0
    recent_errors: int = 0
    earlier_errors: int = 0
    kinds: Counter[str] = field(default_factory=Counter)

    @property
    def calls(self) -> int:
        return len(self.durations)

    @property
    def error_rate(self) -> float:
        return self.errors / len(self.durations) if self.durations else 0.0
