"""Bad input is never a silent no-op: an argument a tool does not take is refused, with the arguments it does take,
in every tool (the SDK would drop it and answer success)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import ServerFactory, call, call_error, connect

pytestmark = pytest.mark.anyio


def objects(node: Any, path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every object schema with properties under ``node``."""
    if isinstance(node, dict):
        if "properties" in node:
            yield path, node
        for key, value in node.items():
            if key in ("properties", "$defs") and isinstance(value, dict):
                for name, sub in value.items():
                    yield from objects(sub, f"{path}.{name}")
            else:
                yield from objects(value, f"{path}/{key}")
    elif isinstance(node, list):
        for i, item in enumerate(node):
            yield from objects(item, f"{path}[{i}]")


async def test_the_shape_of_another_tool_is_refused_and_changes_nothing(make_server: ServerFactory) -> None:
    async with connect(make_server()) as client:
        error = await call_error(client, "set_monitoring_thresholds", {"thresholds": {"cpu_percent": 50}})
        assert "unknown argument(s) 'thresholds'" in error
        assert "cpu_percent" in error and "consecutive_samples" in error  # what it does take
        assert "pass the fields of 'thresholds' as arguments themselves" in error
        state = (await call(client, "get_monitoring_status"))["state"]
        assert state["thresholds"]["cpu_percent"] == 85  # unchanged
        await call(client, "set_monitoring_thresholds", {"cpu_percent": 50})
        assert (await call(client, "get_monitoring_status"))["state"]["thresholds"]["cpu_percent"] == 50


async def test_every_tool_refuses_an_argument_it_does_not_take(make_server: ServerFactory) -> None:
    async with connect(make_server()) as client:
        tools = (await client.list_tools()).tools
        assert len(tools) >= 27
        for tool in tools:
            error = await call_error(client, tool.name, {"no_such_argument": 1})
            assert "unknown argument(s) 'no_such_argument'" in error, (tool.name, error)
            takes = list(tool.input_schema.get("properties", {})) or ["no arguments"]
            assert all(name in error for name in takes), (tool.name, error)
            # Nested objects refuse unknown fields too (declared, so a client can check before it sends).
            for path, schema in objects(tool.input_schema, tool.name):
                if path != tool.name:
                    assert schema.get("additionalProperties") is False, path


async def test_a_misplaced_field_inside_an_object_argument_is_refused(make_server: ServerFactory) -> None:
    async with connect(make_server()) as client:
        error = await call_error(client, "start_monitoring", {"thresholds": {"cpu": 50}})
        assert "thresholds.cpu" in error and "not an argument this takes" in error
        assert (await call(client, "get_monitoring_status"))["state"]["running"] is False


async def test_pushed_items_with_fields_they_do_not_have_are_refused_one_by_one(make_server: ServerFactory) -> None:
    async with connect(make_server()) as client:
        pushed = await call(
            client,
            "ingest_telemetry",
            {
                "tenant_id": "acme",
                "metrics": [{"name": "a", "value": 1, "valu": 2}, {"name": "b", "value": 3}],
                "logs": [{"message": "x", "lvl": "error"}],
            },
        )
        assert pushed["accepted"]["metrics"] == 1 and pushed["accepted"]["logs"] == 0
        reasons = {(r["kind"], r["index"]): r["reason"] for r in pushed["rejections"]}
        assert reasons == {
            ("metric", 0): "valu: Extra inputs are not permitted",
            ("log", 0): "lvl: Extra inputs are not permitted",
        }
