"""``tools/list`` is small enough to sit in a model's context: at most 64 KB, every field described, each object
described in full once, nothing left of pydantic's generated titles; and a tool added while the server runs is
listed the same way."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from mcp.types import ListToolsResult, Tool

from tests.conftest import ServerFactory, connect

pytestmark = pytest.mark.anyio

MAX_BYTES = 64 * 1024
POINTER = re.compile(r"See (?:\w+ in (?P<home>\w+)|(?P<root>\w+)'s result)\.")


def wire_size(tools: list[Tool]) -> int:
    """Bytes of the ``tools/list`` result as the SDK serialises it for the wire."""
    return len(ListToolsResult(tools=tools).model_dump_json(by_alias=True, exclude_none=True).encode())


def schemas(tool: Tool) -> Iterator[tuple[str, dict[str, Any]]]:
    yield f"{tool.name}(input)", tool.input_schema
    if tool.output_schema is not None:
        yield f"{tool.name}(output)", tool.output_schema


def walk(node: Any, path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every schema object under ``node`` (property maps and ``$defs`` are maps of names, not schemas)."""
    if isinstance(node, list):
        for i, item in enumerate(node):
            yield from walk(item, f"{path}[{i}]")
    elif isinstance(node, dict):
        yield path, node
        for key, value in node.items():
            if key in ("properties", "$defs") and isinstance(value, dict):
                for name, sub in value.items():
                    yield from walk(sub, f"{path}.{name}")
            elif key not in ("enum", "const", "default", "required"):
                yield from walk(value, f"{path}/{key}")


async def test_the_tool_list_fits_in_64_kb(make_server: ServerFactory) -> None:
    async with connect(make_server()) as client:
        tools = (await client.list_tools()).tools
    assert len(tools) >= 27
    assert wire_size(tools) <= MAX_BYTES, sorted((wire_size([t]), t.name) for t in tools)[-5:]


async def test_every_field_is_described_and_no_generated_titles_remain(make_server: ServerFactory) -> None:
    async with connect(make_server()) as client:
        tools = (await client.list_tools()).tools
    problems: list[str] = []
    for tool in tools:
        assert tool.description and "\n        " not in tool.description, tool.name  # no docstring indentation
        for where, schema in schemas(tool):
            defs = schema.get("$defs", {})
            for path, node in walk(schema, where):
                if isinstance(node.get("title"), str):
                    problems.append(f"{path}: title")
                for name, prop in node.get("properties", {}).items():
                    if not prop.get("description"):
                        problems.append(f"{path}.{name}: no description")
                ref = node.get("$ref")
                if isinstance(ref, str) and ref.removeprefix("#/$defs/") not in defs:
                    problems.append(f"{path}: {ref} does not resolve")
    assert problems == []


async def test_an_object_several_tools_return_is_described_in_full_once(make_server: ServerFactory) -> None:
    """The thresholds, the monitoring state, a monitoring event, a deployment: each one's fields are described in
    one tool's output schema; the other tools point there."""
    async with connect(make_server()) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
    full: dict[str, list[str]] = {}
    for tool in tools.values():
        for path, node in walk(tool.output_schema or {}, tool.name):
            if "properties" in node:
                full.setdefault(json.dumps(sorted(node["properties"])), []).append(path)
            elif pointer := POINTER.fullmatch(node.get("description", "")):
                assert (pointer["home"] or pointer["root"]) in tools, (path, node["description"])
    for marker in ("hysteresis_points", "active_events", "occurrences", "monitor_until", "polls", "rss_bytes"):
        holders = [paths for props, paths in full.items() if marker in json.loads(props)]
        assert len(holders) == 1 and len(holders[0]) == 1, (marker, holders)


async def test_a_tool_added_while_the_server_runs_is_listed_compact(make_server: ServerFactory) -> None:
    server = make_server()
    async with connect(server) as client:
        before = {t.name for t in (await client.list_tools()).tools}

        async def late_tool(limit: int | None = None) -> dict[str, int]:
            """A tool registered after start-up."""
            return {"limit": limit or 0}

        server.add_tool(late_tool)
        listed = {t.name: t for t in (await client.list_tools(cache_mode="bypass")).tools}
        result = await client.call_tool("late_tool", {"limit": 3})
    assert set(listed) == before | {"late_tool"}
    assert "title" not in json.dumps(listed["late_tool"].input_schema)
    assert result.structured_content == {"limit": 3}
