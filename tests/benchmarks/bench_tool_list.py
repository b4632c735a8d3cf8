"""The size of ``tools/list`` as the wire carries it (target <= 64 KB), and the largest tool definitions."""

from __future__ import annotations

import json
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import anyio
from mcp import Client
from mcp.types import ListToolsResult, Tool

from server.app import create_server
from server.settings import Settings

TARGET_BYTES = 64 * 1024


@dataclass(frozen=True)
class ToolListSize:
    tools: int
    wire_bytes: int  # the tools/list result as the SDK serialises it
    spaced_json_bytes: int  # each definition through json.dumps with its default ", " and ": ", summed
    output_schema_bytes: int
    largest: list[tuple[int, str]]


def wire_bytes(tools: list[Tool]) -> int:
    return len(ListToolsResult(tools=tools).model_dump_json(by_alias=True, exclude_none=True).encode())


async def measure() -> ToolListSize:
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp) / "data", workspace=Path(tmp) / "ws")
        async with Client(create_server(settings)) as client:
            tools = (await client.list_tools()).tools
    dumped = [t.model_dump(mode="json", by_alias=True, exclude_none=True) for t in tools]
    return ToolListSize(
        tools=len(tools),
        wire_bytes=wire_bytes(tools),
        spaced_json_bytes=sum(len(json.dumps(d)) for d in dumped),
        output_schema_bytes=sum(len(json.dumps(d.get("outputSchema", {}), separators=(",", ":"))) for d in dumped),
        largest=sorted(((wire_bytes([t]), t.name) for t in tools), reverse=True)[:5],
    )


def main() -> ToolListSize:
    size = anyio.run(measure)
    largest = ", ".join(f"{name} {n}" for n, name in size.largest)
    sys.stdout.write(
        f"tools/list ({size.tools} tools): {size.wire_bytes} bytes on the wire, {size.output_schema_bytes} of them "
        f"output schemas ({size.spaced_json_bytes} as spaced JSON); largest: {largest}  "
        f"[target <= {TARGET_BYTES} bytes: {'met' if size.wire_bytes <= TARGET_BYTES else 'MISSED'}]\n"
    )
    return size


if __name__ == "__main__":
    main()
