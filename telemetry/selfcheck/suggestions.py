"""Optimisation suggestions from the server's self-analysis: one per anomaly or bias, with a priority and the
expected impact in figures (see :mod:`telemetry.selfcheck.analysis`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from telemetry.selfcheck.models import Anomaly, BiasFinding, Priority, Suggestion, ToolFigures

PRIORITY_RANK: dict[Priority, int] = {"low": 0, "medium": 1, "high": 2}
ASSUMED_CACHE_GAIN = 50.0  # percent of a dominating tool's time a cache or cheaper path is assumed to save

# What to do about a tool failing mostly with this kind of error.
_FIX_FOR_KIND = {
    "invalid_arguments": "callers send it invalid arguments: make its parameter descriptions, ranges and defaults "
    "clearer (or accept the common wrong forms)",
    "access_denied": "keys call it without the role or tenant it needs: grant the role to the keys that need it, "
    "or say in the tool description which role and tenant it requires",
    "not_found": "agents ask it for things that do not exist: they may be guessing ids or names that a listing tool "
    "or a clearer error message would give them",
    "refused": "it refuses many requests as not allowed: say in its description what it allows, and to whom",
    "conflict": "many requests come at the wrong moment for the state they act on: say in its description which "
    "state each action needs, and how to see it",
    "invalid": "it refuses many requests as given: make its parameter descriptions and error messages say what it "
    "accepts",
    "unavailable": "a service it depends on (the model, the disk, CloudWatch) often cannot serve it: check that "
    "service and the settings that point to it",
    "tool_error": "it refuses many requests: read its error messages in the server log; agents may be guessing "
    "inputs (ids, names) that a listing tool or a clearer error message would give them",
    "internal": "it crashes: fix the exception (tracebacks in the server log)",
    "cancelled": "callers give up before it answers: make it faster or report progress",
    "unknown_tool": "agents call a tool of this name that does not exist: name the right tools in the server "
    "instructions",
    "protocol_error": "requests to it are rejected as protocol errors: check what clients send",
}


def _server_time(seconds: float) -> str:
    return f"{seconds / 60:.1f} server-minutes" if seconds >= 60 else f"{seconds:.2f} server-seconds"


def suggestions_for(
    anomalies: Sequence[Anomaly],
    bias: Sequence[BiasFinding],
    by_tool: Mapping[str, ToolFigures],
    components: Mapping[str, str],
    per_day: float,
    slow_bound: float,
) -> list[Suggestion]:
    """Suggestions, highest priority and largest expected effect first. ``per_day`` converts a count of analysed
    calls into calls per day."""
    out = [_for_anomaly(a, by_tool[a.tool], per_day, slow_bound) for a in anomalies if a.tool in by_tool]
    for finding in bias:
        if finding.subject == "tool" and finding.name in by_tool:
            out.append(_for_dominating_tool(finding, by_tool[finding.name], components, per_day))
        elif finding.subject == "caller":
            out.append(_for_dominating_caller(finding, per_day))
    out.sort(key=lambda s: (-PRIORITY_RANK[s.priority], -s.expected_gain_percent * s.calls_per_day, s.tool))
    return out


def _for_anomaly(a: Anomaly, f: ToolFigures, per_day: float, slow_bound: float) -> Suggestion:
    calls_day = f.calls * per_day
    ev = a.evidence
    if a.kind == "failing_tool":
        kind = str(ev["top_error_kind"])
        share = 100 * f.kinds[kind] / f.calls
        priority: Priority = "high" if kind == "internal" or float(ev["error_rate_percent"]) >= 50 else "medium"
        return Suggestion(
            priority=priority, tool=a.tool, component=a.component,
            action=f"{a.tool}: {_FIX_FOR_KIND.get(kind, 'look at why it fails')}",
            evidence=a.summary,
            expected_impact=f"-{f.kinds[kind] * per_day:.0f} failed calls/day ({share:.0f}% of its "
            f"{calls_day:.0f} calls/day)",
            expected_gain_percent=round(share, 2), calls_per_day=round(calls_day, 2),
        )  # fmt: skip
    if a.kind == "error_rate_increase":
        recent, earlier = float(ev["recent_error_rate_percent"]), float(ev["earlier_error_rate_percent"])
        return Suggestion(
            priority="high" if a.severity == "high" else "medium", tool=a.tool, component=a.component,
            action=f"{a.tool}: find what changed recently (deployments, inputs, dependencies) to make it fail more",
            evidence=a.summary,
            expected_impact=f"error rate {recent:.0f}% -> {earlier:.0f}%: -{(recent - earlier) * calls_day / 100:.0f} "
            "failed calls/day",
            expected_gain_percent=round(recent - earlier, 2), calls_per_day=round(calls_day, 2),
        )  # fmt: skip
    if a.kind == "latency_regression":
        action = (f"{a.tool}: find what made it slower recently (a deployment of {a.component or 'its module'}, "
                  "more data, a slower dependency) and undo or optimise it")  # fmt: skip
        return _latency(a, float(ev["recent_p95_ms"]) / 1000, float(ev["earlier_p95_ms"]) / 1000, action, calls_day)
    action = (f"{a.tool}: cache or precompute its result, or move the slow work off the request path "
              "(a background task the caller can poll)")  # fmt: skip
    return _latency(a, float(ev["p95_ms"]) / 1000, slow_bound, action, calls_day)


def _latency(a: Anomaly, p95: float, target: float, action: str, calls_day: float) -> Suggestion:
    """A suggestion to bring a tool's p95 (seconds) down to ``target``."""
    gain = 100 * (p95 - target) / p95
    return Suggestion(
        priority="high" if a.severity == "high" else "medium", tool=a.tool, component=a.component, action=action,
        evidence=a.summary,
        expected_impact=f"p95 {p95:.2f} s -> {target:.2f} s: -{gain:.0f}% latency for {calls_day:.0f} calls/day",
        expected_gain_percent=round(gain, 2), calls_per_day=round(calls_day, 2),
    )  # fmt: skip


def _for_dominating_tool(
    finding: BiasFinding, f: ToolFigures, components: Mapping[str, str], per_day: float
) -> Suggestion:
    saved = sum(f.durations) * per_day * ASSUMED_CACHE_GAIN / 100
    mean_ms = 1000 * sum(f.durations) / f.calls
    return Suggestion(
        priority="medium" if finding.share_percent >= 80 and mean_ms >= 100 else "low",
        tool=finding.name, component=components.get(finding.name),
        action=f"{finding.name} dominates the calls: keep it as cheap as possible (serve it from a cache), and if "
        "agents poll it, point them at a subscription or resource instead",
        evidence=f"{finding.summary}; mean {mean_ms:.1f} ms",
        expected_impact=f"a cache saving {ASSUMED_CACHE_GAIN:.0f}% of its time frees {_server_time(saved)}/day over "
        f"{f.calls * per_day:.0f} calls/day",
        expected_gain_percent=ASSUMED_CACHE_GAIN, calls_per_day=round(f.calls * per_day, 2),
    )  # fmt: skip


def _for_dominating_caller(finding: BiasFinding, per_day: float) -> Suggestion:
    calls_day = finding.calls * per_day
    excess = calls_day * (1 - 50 / finding.share_percent)
    return Suggestion(
        priority="low", tool="*", component=None,
        action=f"caller {finding.name} makes most calls: check it for loops or needless polling, or give keys a "
        "rate limit",
        evidence=finding.summary,
        expected_impact=f"bringing it down to half of the calls removes {excess:.0f} of its {calls_day:.0f} calls/day",
        expected_gain_percent=round(finding.share_percent - 50, 2), calls_per_day=round(calls_day, 2),
    )  # fmt: skip
