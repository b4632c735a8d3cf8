"""Protocol edges over the real stdio transport: every malformed line is answered as JSON-RPC says (the SDK's own
transport dropped them silently, so the client waited forever), an unknown prompt is invalid params, and the server
keeps serving afterwards."""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.abc import Process
from anyio.streams.buffered import BufferedByteReceiveStream

from tests.test_transports import server_env

INIT = {
    "jsonrpc": "2.0",
    "id": "init",
    "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
}
REPLY_LIMIT = 16 * 2**20
MESSAGE_LIMIT = 4 * 2**20  # the SDK's HTTP body limit, which the stdio transport applies to lines too


def nested(depth: int) -> Any:
    value: Any = []
    for _ in range(depth - 1):
        value = [value]
    return value


def line(message: object) -> bytes:
    return json.dumps(message).encode() + b"\n"


@asynccontextmanager
async def stdio_server(tmp_path: Path) -> AsyncIterator[tuple[Process, BufferedByteReceiveStream]]:
    """The real server over stdio, spoken to in raw lines; its log goes to ``stderr.log``."""
    with (tmp_path / "stderr.log").open("wb") as errlog:
        proc = await anyio.open_process(
            [sys.executable, "-m", "server", "serve"],
            env=server_env(tmp_path, SELF_BUILDING_LOG_LEVEL="INFO"),
            cwd=tmp_path,
            stderr=errlog,
        )
        assert proc.stdin is not None and proc.stdout is not None
        try:
            yield proc, BufferedByteReceiveStream(proc.stdout)
        finally:
            with anyio.fail_after(60), anyio.CancelScope(shield=True):
                await proc.stdin.aclose()  # end of input: the server stops
                await proc.wait()
            await proc.aclose()


async def collect(
    reader: BufferedByteReceiveStream, ids: set[object], nulls: int
) -> tuple[dict[object, dict[str, Any]], list[dict[str, Any]]]:
    """Read replies until every id in ``ids`` and ``nulls`` replies with id null have come (bounded)."""
    by_id: dict[object, dict[str, Any]] = {}
    null: list[dict[str, Any]] = []
    with anyio.fail_after(60):  # the old transport never answered: this is where it failed
        while not ids <= by_id.keys() or len(null) < nulls:
            reply = json.loads(await reader.receive_until(b"\n", REPLY_LIMIT))
            if "method" in reply:
                continue  # a notification (or a request) from the server, not a reply
            if reply.get("id") is None:
                null.append(reply)
            else:
                by_id[reply["id"]] = reply
    return by_id, null


@pytest.mark.anyio
async def test_every_malformed_line_gets_a_json_rpc_answer(tmp_path: Path) -> None:
    deep_call = {
        "jsonrpc": "2.0",
        "id": "deep",
        "method": "tools/call",
        "params": {"name": "get_system_status", "arguments": {"x": nested(200)}},
    }
    deep_id_last = {"jsonrpc": "2.0", "method": "tools/call", "params": {"x": nested(500)}, "id": 77}
    oversized = b'{"jsonrpc":"2.0","id":"big","method":"ping","params":{"pad":"' + b"x" * MESSAGE_LIMIT + b'"}}\n'
    async with stdio_server(tmp_path) as (proc, reader):
        assert proc.stdin is not None
        await proc.stdin.send(line(INIT) + line({"jsonrpc": "2.0", "method": "notifications/initialized"}))
        await collect(reader, {"init"}, 0)
        await proc.stdin.send(
            b"this is not json\n"
            + b"\xff\xfe{}\n"
            + b"\n"  # a blank line is skipped, not answered
            + line({"jsonrpc": "2.0", "id": 2})
            + line([{"jsonrpc": "2.0", "id": 3, "method": "ping"}])
            + line({"jsonrpc": "2.0", "id": 1.5, "method": "ping"})
            + line({"jsonrpc": "2.0", "id": {"a": 1}, "method": "ping"})
            + line({"jsonrpc": "2.0", "id": None, "method": "ping"})
            + line({"jsonrpc": "2.0", "id": 4, "method": "ping", "params": [1, 2]})
            + line(deep_call)
            + line(deep_id_last)
            + oversized
            + line({"jsonrpc": "2.0", "id": 8, "method": "prompts/get", "params": {"name": "no_such_prompt"}})
            + line({"jsonrpc": "2.0", "id": 99, "method": "ping"})
        )
        by_id, null = await collect(reader, {2, 4, "deep", 77, "big", 8, 99}, 6)

    from server.jsonrpc_guard import MAX_DEPTH, MAX_MESSAGE_BYTES

    assert MAX_MESSAGE_BYTES == MESSAGE_LIMIT
    assert by_id[99]["result"] == {}  # still serving after all of it
    assert by_id[2]["error"]["code"] == -32600 and '"method"' in by_id[2]["error"]["message"]
    assert by_id[4]["error"]["code"] == -32600 and "params" in by_id[4]["error"]["message"]
    for rid in ("deep", 77):
        error = by_id[rid]["error"]
        assert error["code"] == -32600 and f"deeper than {MAX_DEPTH} levels" in error["message"]
    big = by_id["big"]["error"]
    assert big["code"] == -32600 and f"over {MAX_MESSAGE_BYTES} bytes" in big["message"]
    prompt = by_id[8]["error"]
    assert prompt["code"] == -32602 and "no_such_prompt" in prompt["message"] and "diagnose_system" in prompt["message"]
    codes = sorted(reply["error"]["code"] for reply in null)
    assert codes == [-32700, -32700, -32600, -32600, -32600, -32600], null
    messages = " | ".join(reply["error"]["message"] for reply in null)
    assert "batches" in messages and "not a fractional number" in messages and "not an object" in messages
    assert "not null" in messages
    log = (tmp_path / "stderr.log").read_text(encoding="utf-8")
    assert log.count("stdio: refused a message") == 11  # one warning per refused line
    assert "Traceback" not in log and " ERROR " not in log  # the unknown prompt is the client's mistake, not a crash
    assert "stdio server stopped: end of input" in log
