"""Metacognition: the server's analysis of its own tool calls over a window (pure: no I/O, unit-testable).

Decision patterns (which tools and callers, with a diversity score), execution times per tool, failure patterns,
bias (one tool or caller taking more than ``bias_share`` of the calls), anomalies (slow tools: p95 above an absolute
bound or, in the newest ``recent_share`` of the window, ``regression_factor`` times their earlier p95; failing tools:
an error rate of ``failing_rate`` or more, or a recent jump of it) and optimisation suggestions built from them.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from telemetry.selfcheck.calls import ToolCall
from telemetry.selfcheck.models import (
    Anomaly,
    BiasFinding,
    CallerUsage,
    DecisionPatterns,
    FailurePair,
    FailurePatterns,
    SelfReport,
    ToolFailures,
    ToolFigures,
    ToolTiming,
    ToolUsage,
)
from telemetry.selfcheck.suggestions import suggestions_for

SEVERITY_RANK = {"low": 0, "medium": 1, "high": 2, "critical": 3}


SERVER_ERROR_KINDS: tuple[str, ...] = ("internal",)  # a crash of the tool's own code, not a caller's mistake


@dataclass(frozen=True, slots=True)
class SelfAnalysisConfig:
    """Thresholds of the analysis."""

    top: int = 10  # entries per list in the report
    bias_share: float = 0.5  # one tool or caller above this share of the calls is a bias ...
    bias_min_calls: int = 20  # ... once the window holds this many calls
    failing_rate: float = 0.2  # a tool failing this often is an anomaly ...
    failing_min_calls: int = 5  # ... once it has this many calls
    rate_jump: float = 0.2  # recent error rate this much above the earlier one is an anomaly
    slow_p95_seconds: float = 2.0  # a tool with its p95 above this is slow
    regression_factor: float = 2.0  # recent p95 this many times the earlier p95 is a regression ...
    regression_min_seconds: float = 0.05  # ... when it grew by at least this much
    min_calls: int = 5  # calls needed in each part (earlier, recent) to compare them
    recent_share: float = 0.25  # the newest quarter of the window is compared with the rest


def percentile(ordered: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of sorted values (0 for none)."""
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def diversity(counts: Sequence[int]) -> float:
    """Shannon entropy of ``counts`` divided by its maximum (0 with fewer than two kinds)."""
    total = sum(counts)
    if len(counts) < 2 or total == 0:
        return 0.0
    entropy = -sum(c / total * math.log(c / total) for c in counts if c)
    return round(entropy / math.log(len(counts)), 4)


def figures_of(calls: Sequence[ToolCall], recent_start: float) -> dict[str, ToolFigures]:
    by_tool: dict[str, ToolFigures] = defaultdict(ToolFigures)
    for call in calls:
        figures = by_tool[call.tool]
        figures.durations.append(call.duration)
        failed = call.outcome == "error"
        if call.ts >= recent_start:
            figures.recent.append(call.duration)
            figures.recent_errors += failed
        else:
            figures.earlier.append(call.duration)
            figures.earlier_errors += failed
        if failed:
            figures.errors += 1
            figures.kinds[call.error_kind or "unknown"] += 1
    for figures in by_tool.values():
        figures.durations.sort()
        figures.recent.sort()
        figures.earlier.sort()
    return dict(by_tool)


def analyse_calls(
    calls: Sequence[ToolCall],
    *,
    start: float,
    end: float,
    calls_in_window: int | None = None,
    tenants: list[str] | None = None,
    components: Mapping[str, str] | None = None,
    caller_label: Callable[[str], str] | None = None,
    config: SelfAnalysisConfig = SelfAnalysisConfig(),
) -> SelfReport:
    """Analyse ``calls`` (the window ``[start, end]``; ``calls_in_window`` when more were recorded than given).

    ``components`` maps tool names to the module and function behind them; ``caller_label`` renames callers for the
    report (to hide other keys from a tenant's key).
    """
    components = components or {}
    total = len(calls)
    in_window = max(total, calls_in_window or 0)
    hours = max((end - start) / 3600, 1e-9)
    per_day = (in_window / total if total else 1.0) * 24 / hours  # one analysed call stands for this many per day
    by_tool = figures_of(calls, end - config.recent_share * (end - start))
    callers = Counter(caller_label(c.caller) if caller_label else c.caller for c in calls)
    patterns = _decision_patterns(by_tool, callers, total, config.top)
    anomalies = _anomalies(by_tool, components, config)
    bias = _bias(patterns, callers, total, config)
    suggestions = suggestions_for(anomalies, bias, by_tool, components, per_day, config.slow_p95_seconds)
    timings = sorted(
        (_timing(tool, f) for tool, f in by_tool.items()), key=lambda t: (-t.p95_ms, t.tool)
    )  # fmt: skip
    return SelfReport(
        window_start=start,
        window_end=end,
        lookback_hours=round(hours, 4),
        tenants=tenants,
        calls_in_window=in_window,
        calls_analysed=total,
        truncated=in_window > total,
        decision_patterns=patterns,
        execution_times=timings[: config.top],
        execution_times_has_more=len(timings) > config.top,
        failure_patterns=_failure_patterns(by_tool, total, config.top),
        bias=bias,
        anomalies=anomalies[: config.top],
        anomalies_has_more=len(anomalies) > config.top,
        suggestions=suggestions[: config.top],
        suggestions_has_more=len(suggestions) > config.top,
    )


def _share(part: int, total: int) -> float:
    return round(100.0 * part / total, 2) if total else 0.0


def _decision_patterns(
    by_tool: Mapping[str, ToolFigures], callers: Counter[str], total: int, top: int
) -> DecisionPatterns:
    usage = sorted(((f.calls, tool) for tool, f in by_tool.items()), key=lambda u: (-u[0], u[1]))
    return DecisionPatterns(
        total_calls=total,
        distinct_tools=len(by_tool),
        diversity_score=diversity([count for count, _ in usage]),
        tools=[ToolUsage(tool=tool, calls=count, share_percent=_share(count, total)) for count, tool in usage[:top]],
        tools_has_more=len(usage) > top,
        callers=[
            CallerUsage(caller=caller, calls=count, share_percent=_share(count, total))
            for caller, count in callers.most_common(top)
        ],
        callers_has_more=len(callers) > top,
    )


def _timing(tool: str, f: ToolFigures) -> ToolTiming:
    return ToolTiming(
        tool=tool,
        calls=f.calls,
        mean_ms=round(1000 * sum(f.durations) / f.calls, 3),
        p50_ms=round(1000 * percentile(f.durations, 0.5), 3),
        p95_ms=round(1000 * percentile(f.durations, 0.95), 3),
        max_ms=round(1000 * f.durations[-1], 3),
    )


def _failure_patterns(by_tool: Mapping[str, ToolFigures], total: int, top: int) -> FailurePatterns:
    failing = sorted((t for t in by_tool.items() if t[1].errors), key=lambda t: (-t[1].errors, t[0]))
    kinds: Counter[str] = Counter()
    pairs: Counter[tuple[str, str]] = Counter()
    for tool, f in failing:
        kinds.update(f.kinds)
        pairs.update({(tool, kind): n for kind, n in f.kinds.items()})
    errors = sum(f.errors for _, f in failing)
    return FailurePatterns(
        total_errors=errors,
        error_rate_percent=_share(errors, total),
        by_kind=dict(kinds.most_common()),
        tools=[
            ToolFailures(
                tool=tool,
                calls=f.calls,
                errors=f.errors,
                error_rate_percent=_share(f.errors, f.calls),
                by_kind=dict(f.kinds.most_common()),
            )
            for tool, f in failing[:top]
        ],
        tools_has_more=len(failing) > top,
        top_pairs=[
            FailurePair(tool=tool, error_kind=kind, count=n)
            for (tool, kind), n in sorted(pairs.items(), key=lambda p: (-p[1], p[0]))[:top]
        ],
    )


def _bias(
    patterns: DecisionPatterns, callers: Counter[str], total: int, config: SelfAnalysisConfig
) -> list[BiasFinding]:
    found: list[BiasFinding] = []
    if total < config.bias_min_calls:
        return found
    threshold = 100 * config.bias_share
    top_tool = patterns.tools[0] if patterns.tools else None
    if top_tool is not None and top_tool.share_percent > threshold:
        found.append(
            BiasFinding(
                subject="tool", name=top_tool.tool, calls=top_tool.calls, share_percent=top_tool.share_percent,
                summary=f"{top_tool.tool} takes {top_tool.share_percent:.0f}% of the {total} calls "
                f"(over {len(patterns.tools)} tools{'+' if patterns.tools_has_more else ''})",
            )
        )  # fmt: skip
    if len(callers) >= 2:  # with one caller there is nobody to dominate
        caller, count = callers.most_common(1)[0]
        share = _share(count, total)
        if share > threshold:
            found.append(
                BiasFinding(
                    subject="caller", name=caller, calls=count, share_percent=share,
                    summary=f"caller {caller} makes {share:.0f}% of the {total} calls ({len(callers)} callers)",
                )
            )  # fmt: skip
    return found


def _anomalies(
    by_tool: Mapping[str, ToolFigures], components: Mapping[str, str], config: SelfAnalysisConfig
) -> list[Anomaly]:
    found: list[Anomaly] = []
    for tool, f in by_tool.items():
        found += _failing(tool, components.get(tool), f, config) + _slow(tool, components.get(tool), f, config)
    found.sort(key=lambda a: (-SEVERITY_RANK[a.severity], a.tool, a.kind))
    return found


def _failing(tool: str, component: str | None, f: ToolFigures, config: SelfAnalysisConfig) -> list[Anomaly]:
    out: list[Anomaly] = []
    rate = 100 * f.error_rate
    # Failures of the server's own code (crashes), as opposed to callers' mistakes (bad arguments, missing roles).
    server_share = round(100 * sum(f.kinds[k] for k in SERVER_ERROR_KINDS) / max(f.errors, 1), 2)
    if f.calls >= config.failing_min_calls and f.error_rate >= config.failing_rate:
        kind, count = f.kinds.most_common(1)[0]
        out.append(Anomaly(
            kind="failing_tool", tool=tool, component=component,
            severity="critical" if rate >= 90 else "high" if rate >= 50 or "internal" in f.kinds else "medium",
            summary=f"{tool} fails {rate:.0f}% of its {f.calls} calls, mostly {kind} ({count})",
            evidence={"calls": f.calls, "errors": f.errors, "error_rate_percent": round(rate, 2),
                      "top_error_kind": kind, "change_percent": round(rate, 2), "bad_share_percent": round(rate, 2),
                      "server_error_share_percent": server_share},
        ))  # fmt: skip
    if len(f.recent) >= config.min_calls and len(f.earlier) >= config.min_calls:
        before, now = f.earlier_errors / len(f.earlier), f.recent_errors / len(f.recent)
        if now - before >= config.rate_jump:
            jump = 100 * (now - before)
            out.append(Anomaly(
                kind="error_rate_increase", tool=tool, component=component,
                severity="high" if jump >= 50 else "medium",
                summary=f"{tool}'s error rate rose from {100 * before:.0f}% to {100 * now:.0f}% recently",
                evidence={"earlier_error_rate_percent": round(100 * before, 2),
                          "recent_error_rate_percent": round(100 * now, 2), "change_percent": round(jump, 2),
                          "bad_share_percent": round(100 * now, 2), "server_error_share_percent": server_share},
            ))  # fmt: skip
    return out


def _slow(tool: str, component: str | None, f: ToolFigures, config: SelfAnalysisConfig) -> list[Anomaly]:
    out: list[Anomaly] = []
    p95 = percentile(f.durations, 0.95)
    bound = config.slow_p95_seconds
    if f.calls >= config.min_calls and p95 > bound:
        slow_share = 100 * sum(1 for d in f.durations if d > bound) / f.calls
        out.append(Anomaly(
            kind="slow_tool", tool=tool, component=component, severity="high" if p95 >= 3 * bound else "medium",
            summary=f"{tool}'s p95 {p95:.2f} s is above the {bound:.2f} s bound ({slow_share:.0f}% of calls slower)",
            evidence={"p95_ms": round(1000 * p95, 3), "bound_ms": round(1000 * bound, 3), "calls": f.calls,
                      "change_percent": round(100 * (p95 - bound) / bound, 2),
                      "bad_share_percent": round(slow_share, 2)},
        ))  # fmt: skip
    if len(f.recent) >= config.min_calls and len(f.earlier) >= config.min_calls:
        before, now = percentile(f.earlier, 0.95), percentile(f.recent, 0.95)
        if now >= config.regression_factor * before and now - before >= config.regression_min_seconds:
            change = 100 * (now - before) / max(before, 1e-9)
            slower = 100 * sum(1 for d in f.recent if d > before) / len(f.recent)
            out.append(Anomaly(
                kind="latency_regression", tool=tool, component=component,
                severity="high" if change >= 200 else "medium",
                summary=f"{tool} got slower: p95 {1000 * before:.0f} ms → {1000 * now:.0f} ms ({change:+.0f}%) in "
                "the newest part of the window",
                evidence={"earlier_p95_ms": round(1000 * before, 3), "recent_p95_ms": round(1000 * now, 3),
                          "change_percent": round(change, 2), "bad_share_percent": round(slower, 2)},
            ))  # fmt: skip
    return out
