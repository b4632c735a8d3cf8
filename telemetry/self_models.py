"""The shape of the server's analysis of its own tool calls (see :mod:`telemetry.self_analysis`)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

Priority = Literal["high", "medium", "low"]
AnomalyKind = Literal["slow_tool", "latency_regression", "failing_tool", "error_rate_increase"]


class ToolUsage(BaseModel):
    tool: str = Field(description="Tool name.")
    calls: int = Field(description="Calls in the window.")
    share_percent: float = Field(description="Share of all calls in the window, in percent.")


class CallerUsage(BaseModel):
    caller: str = Field(description="API key name ('local' over stdio; other keys are hidden from tenant keys).")
    calls: int = Field(description="Calls in the window.")
    share_percent: float = Field(description="Share of all calls in the window, in percent.")


class DecisionPatterns(BaseModel):
    total_calls: int = Field(description="Calls analysed.")
    distinct_tools: int = Field(description="How many different tools were called.")
    diversity_score: float = Field(
        description="Normalised Shannon entropy of the calls over the tools used: 0 = one tool only, 1 = all used "
        "tools equally often."
    )
    tools: list[ToolUsage] = Field(description="Calls per tool, most used first.")
    tools_has_more: bool = Field(description="True when more tools were called than listed.")
    callers: list[CallerUsage] = Field(description="Calls per caller, most active first.")
    callers_has_more: bool = Field(description="True when more callers were seen than listed.")


class ToolTiming(BaseModel):
    tool: str = Field(description="Tool name.")
    calls: int = Field(description="Calls in the window.")
    mean_ms: float = Field(description="Mean duration, milliseconds.")
    p50_ms: float = Field(description="Median duration, milliseconds.")
    p95_ms: float = Field(description="95th percentile duration, milliseconds.")
    max_ms: float = Field(description="Longest call, milliseconds.")


class ToolFailures(BaseModel):
    tool: str = Field(description="Tool name.")
    calls: int = Field(description="Calls in the window.")
    errors: int = Field(description="Calls that ended in an error.")
    error_rate_percent: float = Field(description="errors / calls, in percent.")
    by_kind: dict[str, int] = Field(description="Errors per kind.")


class FailurePair(BaseModel):
    tool: str = Field(description="Tool name.")
    error_kind: str = Field(description="access_denied, invalid_arguments, tool_error, unknown_tool, internal, ...")
    count: int = Field(description="Errors of this kind from this tool.")


class FailurePatterns(BaseModel):
    total_errors: int = Field(description="Calls that ended in an error.")
    error_rate_percent: float = Field(description="Share of all calls that failed, in percent.")
    by_kind: dict[str, int] = Field(description="Errors per kind over every tool.")
    tools: list[ToolFailures] = Field(description="Tools with errors, most errors first.")
    tools_has_more: bool = Field(description="True when more tools failed than listed.")
    top_pairs: list[FailurePair] = Field(description="The most frequent (tool, error kind) pairs.")


class BiasFinding(BaseModel):
    subject: Literal["tool", "caller"] = Field(description="What dominates: one tool or one caller.")
    name: str = Field(description="The dominating tool or caller.")
    calls: int = Field(description="Its calls in the window.")
    share_percent: float = Field(description="Its share of all calls, in percent.")
    summary: str = Field(description="One line for a human.")


class Anomaly(BaseModel):
    kind: AnomalyKind = Field(description="slow_tool, latency_regression, failing_tool or error_rate_increase.")
    tool: str = Field(description="Tool name.")
    component: str | None = Field(description="The server module and function behind the tool.")
    severity: Literal["low", "medium", "high", "critical"] = Field(description="How bad it is.")
    summary: str = Field(description="One line for a human.")
    evidence: dict[str, float | str] = Field(description="The figures behind it.")


class Suggestion(BaseModel):
    priority: Priority = Field(description="high, medium or low.")
    tool: str = Field(description="The tool it is about.")
    component: str | None = Field(description="The server module and function to change.")
    action: str = Field(description="What to do.")
    evidence: str = Field(description="Why: the figures behind it.")
    expected_impact: str = Field(description="What it should gain, in words with figures.")
    expected_gain_percent: float = Field(
        description="Expected reduction of the tool's latency or failures, in percent."
    )
    calls_per_day: float = Field(description="Calls per day that would benefit (extrapolated from the window).")


class SelfReport(BaseModel):
    window_start: float = Field(description="Unix time the window starts.")
    window_end: float = Field(description="Unix time the window ends (now).")
    lookback_hours: float = Field(description="Window length in hours.")
    tenants: list[str] | None = Field(description="Tenants whose calls were analysed (null: every tenant).")
    calls_in_window: int = Field(description="Calls recorded in the window.")
    calls_analysed: int = Field(description="Calls analysed (the newest ones when the window holds more).")
    truncated: bool = Field(description="True when only the newest calls of the window were analysed.")
    decision_patterns: DecisionPatterns = Field(description="Which tools and callers the calls went to.")
    execution_times: list[ToolTiming] = Field(description="Duration statistics per tool, slowest p95 first.")
    execution_times_has_more: bool = Field(description="True when more tools were timed than listed.")
    failure_patterns: FailurePatterns = Field(description="Errors by tool and kind.")
    bias: list[BiasFinding] = Field(description="A tool or caller taking more than its share of the calls.")
    anomalies: list[Anomaly] = Field(description="Slow or failing tools, most severe first.")
    anomalies_has_more: bool = Field(description="True when more anomalies were found than listed.")
    suggestions: list[Suggestion] = Field(description="Optimisation suggestions, highest priority first.")
    suggestions_has_more: bool = Field(description="True when more suggestions were made than listed.")
