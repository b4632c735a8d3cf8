"""Wrong types, out-of-range numbers and unknown names come back as ToolErrors that say what was wrong,
and the server keeps serving afterwards."""

from __future__ import annotations

from typing import Any

import pytest

from server.settings import Settings
from tests.backend import on_postgresql
from tests.conftest import ServerFactory, call, call_error, connect

pytestmark = pytest.mark.anyio

CASES: list[tuple[str, dict[str, Any], list[str]]] = [
    ("start_monitoring", {"interval_seconds": "soon"}, ["interval_seconds", "valid number"]),
    ("start_monitoring", {"interval_seconds": -5}, ["interval_seconds", "greater than or equal to 0.1"]),
    ("start_monitoring", {"interval_seconds": 86400}, ["interval_seconds", "less than or equal to 3600"]),
    ("start_monitoring", {"thresholds": {"memory_percent": 0}}, ["memory_percent", "greater than 0"]),
    ("start_monitoring", {"thresholds": "high"}, ["thresholds"]),
    ("query_monitoring_events", {"event_type": "cpu_melting"}, ["event_type", "'cpu_high'"]),
    ("query_monitoring_events", {"severity": "apocalyptic"}, ["severity", "'critical'"]),
    ("query_monitoring_events", {"limit": 100000}, ["limit", "less than or equal to 500"]),
    ("query_monitoring_events", {"limit": 0}, ["limit", "greater than or equal to 1"]),
    ("query_monitoring_events", {"since": "the dawn of time"}, ["since='the dawn of time' is not a time"]),
    ("set_monitoring_thresholds", {"disk_percent": 101}, ["disk_percent", "less than or equal to 100"]),
    ("set_monitoring_thresholds", {"gpu_temperature_c": [1, 2]}, ["gpu_temperature_c"]),
    ("set_monitoring_thresholds", {"hysteresis_points": 80}, ["hysteresis_points", "less than or equal to 50"]),
    ("get_top_processes", {"sort_by": 7}, ["sort_by"]),
    ("ingest_telemetry", {"tenant_id": "t", "metrics": "lots"}, ["metrics", "valid list"]),
    ("ingest_telemetry", {"metrics": []}, ["tenant_id", "Field required"]),
    ("ingest_telemetry", {"tenant_id": "../../etc/passwd"}, ["tenant_id", "is not valid"]),
    ("query_telemetry_insights", {"time_range_hours": "forever"}, ["time_range_hours", "valid number"]),
    ("query_telemetry_insights", {"time_range_hours": 0}, ["time_range_hours", "greater than 0"]),
    ("query_telemetry_insights", {"kinds": ["gossip"]}, ["kinds", "'error_pattern'"]),
    ("query_telemetry_insights", {"risk_tolerance": "yolo"}, ["risk_tolerance", "'high'"]),
    ("query_telemetry_insights", {"tenant_id": "'; DROP TABLE points;--"}, ["tenant_id", "is not valid"]),
    ("query_error_patterns", {"tenant_id": "a\u0000b"}, ["tenant_id", "is not valid"]),
    ("query_error_patterns", {"limit": 1000}, ["limit", "less than or equal to 200"]),
    ("get_alarm_states", {"state": "ON_FIRE"}, ["state", "'ALARM'"]),
    ("get_alarm_states", {"limit": -1}, ["limit", "greater than or equal to 1"]),
]


@pytest.mark.parametrize(("tool", "args", "expected"), CASES, ids=[f"{c[0]}-{next(iter(c[1]))}" for c in CASES])
async def test_bad_arguments_are_explained(
    make_server: ServerFactory, tool: str, args: dict[str, Any], expected: list[str]
) -> None:
    async with connect(make_server()) as client:
        message = await call_error(client, tool, args)
        assert message.startswith(f"Error executing tool {tool}")
        for fragment in expected:
            assert fragment in message, message
        # Still serving, and nothing was changed by the rejected call.
        status = await call(client, "get_monitoring_status")
        assert status["state"]["running"] is False
        assert status["state"]["thresholds"]["disk_percent"] == 85


async def test_unknown_tool(make_server: ServerFactory) -> None:
    async with connect(make_server()) as client:
        result = await client.call_tool("rm_rf_everything", {})
        assert result.is_error and "Unknown tool: rm_rf_everything" in result.content[0].text  # type: ignore[union-attr]
        assert (await call(client, "get_system_status"))["verdict"] in ("healthy", "degraded", "critical")


async def test_every_tool_output_field_is_described(make_server: ServerFactory) -> None:
    """Agents read the schemas: every property of every output model carries a description."""
    async with connect(make_server()) as client:
        tools = (await client.list_tools()).tools

    def undescribed(schema: dict[str, Any], path: str) -> list[str]:
        return [f"{path}.{name}" for name, prop in schema.get("properties", {}).items() if "description" not in prop]

    missing: list[str] = []
    for tool in tools:
        assert tool.description, tool.name
        schema = tool.output_schema
        assert schema is not None, f"{tool.name} has no output schema"
        defs = schema.get("$defs", {})
        missing += undescribed(schema, tool.name)
        for def_name, definition in defs.items():
            missing += undescribed(definition, f"{tool.name}:{def_name}")
        for name, prop in tool.input_schema.get("properties", {}).items():
            if "description" not in prop:
                missing.append(f"{tool.name}(input).{name}")
    assert missing == []


async def test_hostile_strings_are_stored_verbatim_and_harmless(make_server: ServerFactory, settings: Settings) -> None:
    hostile = [
        "'; DROP TABLE logs; --",
        "Robert\u0000Tables with a NUL",
        "<script>alert(1)</script> failed",
        "\u202eevil right-to-left \U0001f4a5 " + "x" * 5000,
        "%s%s%n {0} ${jndi:ldap://x} failed",
    ]
    async with connect(make_server()) as client:
        stored = await call(
            client,
            "ingest_telemetry",
            {
                "tenant_id": "t",
                "logs": [{"message": m, "level": "ERROR", "component": m[:40]} for m in hostile],
                "metrics": [{"name": "ok.metric", "value": 1, "dimensions": {"k": hostile[0]}}],
                "events": [{"type": "note", "detail": {"text": hostile[2]}, "id": hostile[0]}],
            },
        )
        assert stored["accepted"] == {"metrics": 1, "logs": 5, "events": 1, "duplicate_events": 0}
        assert stored["rejected"] == 0
        patterns = await call(client, "query_error_patterns", {"tenant_id": "t", "limit": 200})
        insights = await call(client, "query_telemetry_insights", {"tenant_id": "t"})
    examples = {p["example"] for p in patterns["patterns"]}
    if on_postgresql(settings):  # its text cannot hold NUL: stored as U+FFFD (not an error losing the batch)
        hostile = [h.replace("\x00", "\ufffd") for h in hostile]
    assert examples == {h[:2000] for h in hostile}  # byte for byte (long examples cut at 2,000), nothing lost
    assert patterns["lines"] == 5 and insights["summary"]["series_analysed"] >= 1
