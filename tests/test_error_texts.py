"""What a caller reads when a call is refused, through the real stdio transport: the tool's own words, never a
megabyte of its own input echoed back (nor written to a log line), never pydantic's internals, and NaN or Infinity
(which Python's JSON parser accepts) refused for every argument rather than taken as a number."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.test_transports import server_env

MEGABYTE = "x" * 1_000_000
PYDANTIC_WORDS = ("validation error", "Arguments", "pydantic", "errors.pydantic.dev", "input_value", "[type=")
# (tool, arguments, fragments the answer must hold)
REFUSED: list[tuple[str, dict[str, Any], list[str]]] = [
    (MEGABYTE, {}, ["Unknown tool: xxxx"]),
    ("query_audit_log", {"since": MEGABYTE}, ["since='xxxx", "(1,000,000 characters) is not a time", "'2h'"]),
    ("query_monitoring_events", {"since": MEGABYTE}, ["since='xxxx", "is not a time"]),
    ("query_telemetry_insights", {"tenant_id": MEGABYTE}, ["tenant_id 'xxxx", "is not valid", "letters, digits"]),
    ("query_error_patterns", {"tenant_id": MEGABYTE}, ["tenant_id 'xxxx", "is not valid"]),
    ("get_deployment", {"deployment_id": MEGABYTE}, ["deployment_id: String should have at most 64", "got 'xxxx"]),
    ("get_deployment", {"deployment_id": "x" * 64}, ["no deployment has id 'xxxx", "list_deployments"]),
    ("generate_script", {"issue_type": "cpu_high", "parameters": {MEGABYTE: [1]}}, ["parameters.'xxxx", "valid"]),
    ("generate_script", {"issue_type": MEGABYTE}, ["unknown issue_type 'xxxx", "list_script_templates"]),
    ("query_audit_log", {"since": float("nan")}, ["since: NaN and Infinity are not numbers", "finite number"]),
    ("query_audit_log", {"since": float("inf")}, ["since: NaN and Infinity"]),
    ("query_monitoring_events", {"limit": float("-inf")}, ["limit: NaN and Infinity"]),
    ("analyze_self", {"lookback_hours": float("nan")}, ["lookback_hours: NaN and Infinity"]),
    (
        "ingest_telemetry",
        {"tenant_id": "t", "metrics": [{"name": "ok", "value": 1.0}, {"name": "m", "value": float("nan")}]},
        ["metrics[1].value: NaN and Infinity"],
    ),
    ("start_monitoring", {"thresholds": "high"}, ["thresholds: should be an object (got 'high')"]),
    ("start_monitoring", {"thresholds": {"cpu": 50}}, ["thresholds.cpu: Extra inputs are not permitted"]),
    ("query_monitoring_events", {"limit": 0, "severity": "apocalyptic"}, ["limit: ", "severity: ", "'critical'"]),
    ("ingest_telemetry", {"metrics": []}, ["tenant_id: Field required"]),
    ("query_monitoring_events", {"since": [1]}, ["since: Input should be a valid number or a valid string"]),
]


def run_stdio(tmp_path: Path, calls: list[tuple[str, dict[str, Any]]]) -> tuple[list[dict[str, Any]], str]:
    """Send raw JSON-RPC lines (``json.dumps`` writes NaN and Infinity as Python's parser reads them) to the real
    server over stdio; the results in order, and everything it logged."""
    init = {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}
    lines = [
        {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": init},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        *(
            {"jsonrpc": "2.0", "id": i, "method": "tools/call", "params": {"name": name, "arguments": args}}
            for i, (name, args) in enumerate(calls, start=1)
        ),
    ]
    log = tmp_path / "server.log"
    with log.open("w", encoding="utf-8") as errors:  # a file, not a pipe: however much it logs, it never blocks
        proc = subprocess.Popen(
            [sys.executable, "-m", "server", "serve"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=errors,
            env=server_env(tmp_path, SELF_BUILDING_LOG_LEVEL="DEBUG"),
            cwd=tmp_path,
            text=True,
        )
        assert proc.stdin is not None and proc.stdout is not None
        replies: dict[int, dict[str, Any]] = {}
        try:
            for line in lines:
                proc.stdin.write(json.dumps(line) + "\n")
                proc.stdin.flush()
                if "id" not in line:
                    continue
                while line["id"] not in replies:
                    out = proc.stdout.readline()
                    assert out, "server closed stdout"
                    message = json.loads(out)
                    if "id" in message:
                        replies[message["id"]] = message
        finally:
            proc.communicate(timeout=60)  # closes stdin: the server shuts down
    return [replies[i] for i in range(1, len(calls) + 1)], log.read_text(encoding="utf-8")


def test_refusals_are_short_in_the_tools_words_and_so_are_the_logs(tmp_path: Path) -> None:
    quoting = {"name": "m", "value": 1, "timestamp": MEGABYTE}  # refused item by item, each reason quoting it
    ingest = ("ingest_telemetry", {"tenant_id": "t", "metrics": [quoting] * 3, "logs": [{"message": MEGABYTE[:100]}]})
    answers, log = run_stdio(tmp_path, [*((tool, args) for tool, args, _ in REFUSED), ingest])
    *replies, ingested = answers
    result = ingested["result"]
    assert not result.get("isError") and result["structuredContent"]["rejected"] == 3, result
    assert len(json.dumps(result)) < 10_000 and all(
        len(r["reason"]) <= 300 and "timestamp" in r["reason"] for r in result["structuredContent"]["rejections"]
    )
    for (tool, args, fragments), reply in zip(REFUSED, replies, strict=True):
        case = f"{tool[:40]} {str(args)[:80]}"
        result = reply["result"]
        assert result["isError"] is True, case
        text = result["content"][0]["text"]
        assert len(text) <= 1200, (case, len(text))
        for fragment in fragments:
            assert fragment in text, (case, text)
        for word in PYDANTIC_WORDS:
            assert word not in text, (case, text)
        assert "ThresholdUpdate" not in text and "x" * 200 not in text, (case, text)
    longest = max(log.splitlines(), key=len)
    assert len(longest) <= 2000, longest[:300]
    assert "x" * 200 not in log
