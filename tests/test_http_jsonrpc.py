"""Protocol edges over real streamable HTTP: a request whose id is an object, a fraction or null is answered with 400
and a JSON-RPC error (the SDK took it for a notification: 202, no answer), as are batches and too-deep messages; the
API key is still checked first, and an oversized body is refused with 413."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import pytest
from starlette.types import Receive, Scope, Send

from tests.test_stdio_protocol import MESSAGE_LIMIT, nested
from tests.test_transports import HEADERS, INIT, KEY

AUTH = {**HEADERS, "Authorization": f"Bearer {KEY}"}


def legacy_session(base: str) -> dict[str, str]:
    """Headers of an initialised legacy session (where a malformed id used to be taken for a notification)."""
    reply = httpx2.post(f"{base}/mcp", json=INIT, headers=AUTH, timeout=30)
    assert reply.status_code == 200
    session = {**AUTH, "Mcp-Session-Id": reply.headers["mcp-session-id"], "MCP-Protocol-Version": "2025-11-25"}
    done = httpx2.post(f"{base}/mcp", json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=session)
    assert done.status_code == 202
    return session


def post(base: str, body: bytes, headers: dict[str, str]) -> httpx2.Response:
    return httpx2.post(f"{base}/mcp", content=body, headers=headers, timeout=60)


def error_of(reply: httpx2.Response) -> dict[str, Any]:
    message = reply.json()
    assert message["jsonrpc"] == "2.0", message
    return {"id": message["id"], **message["error"]}


def test_bad_ids_batches_and_deep_messages_get_400_with_a_json_rpc_error(http_server: str) -> None:
    session = legacy_session(http_server)
    cases: list[tuple[object, object, int, str]] = [
        ({"jsonrpc": "2.0", "id": {"a": 1}, "method": "ping"}, None, -32600, "not an object"),
        ({"jsonrpc": "2.0", "id": 1.5, "method": "ping"}, None, -32600, "not a fractional number"),
        ({"jsonrpc": "2.0", "id": None, "method": "ping"}, None, -32600, "not null"),
        ({"jsonrpc": "2.0", "id": True, "method": "ping"}, None, -32600, "not a boolean"),
        ([{"jsonrpc": "2.0", "id": 3, "method": "ping"}], None, -32600, "batches"),
        ({"jsonrpc": "2.0", "id": 5}, 5, -32600, '"method"'),
        (
            {"jsonrpc": "2.0", "id": "deep", "method": "tools/call", "params": {"name": "x", "arguments": nested(200)}},
            "deep",
            -32600,
            "nest deeper than",
        ),
    ]
    for message, rid, code, fragment in cases:
        reply = post(http_server, json.dumps(message).encode(), session)
        assert reply.status_code == 400, (message, reply.status_code, reply.text)
        error = error_of(reply)
        assert (error["id"], error["code"]) == (rid, code), error
        assert fragment in error["message"], error
    garbage = post(http_server, b"{not json", session)
    assert garbage.status_code == 400 and error_of(garbage) == {
        "id": None,
        "code": -32700,
        "message": "Parse error: not valid JSON (send one UTF-8 JSON-RPC object per message)",
    }
    ping = post(http_server, json.dumps({"jsonrpc": "2.0", "id": 9, "method": "ping"}).encode(), session)
    assert ping.status_code == 200  # the session still works


def test_the_key_is_checked_before_the_body_and_big_bodies_get_413(http_server: str) -> None:
    unauthenticated = post(http_server, b"[1, 2", HEADERS)
    assert unauthenticated.status_code == 401  # as before: nothing about the body to a client without a key
    big = b'{"jsonrpc":"2.0","id":1,"method":"ping","params":{"pad":"' + b"x" * MESSAGE_LIMIT + b'"}}'
    too_big = post(http_server, big, AUTH)
    assert too_big.status_code == 413
    error = error_of(too_big)
    assert error["code"] == -32600 and str(MESSAGE_LIMIT) in error["message"], error


@pytest.mark.anyio
async def test_the_guard_bounds_what_it_reads_and_hands_on_the_rest_unchanged() -> None:
    from server.jsonrpc_guard import JsonRpcGuardMiddleware

    received: list[bytes] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:  # stands in for the SDK's endpoint
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        received.append(body)
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: the limit must hold while reading
        for _ in range(10):
            yield b" " * 300

    guarded = JsonRpcGuardMiddleware(app, path="/mcp", max_body=1000)
    as_json = {"content-type": "application/json"}
    valid = json.dumps({"jsonrpc": "2.0", "id": "a", "method": "ping"}).encode()
    async with httpx2.AsyncClient(transport=httpx2.ASGITransport(guarded), base_url="http://test") as client:
        passed = await client.post("/mcp", content=valid, headers=as_json)
        streamed = await client.post("/mcp", content=chunks(), headers=as_json)
        declared = await client.post("/mcp", content=b" " * 1001, headers=as_json)
        not_json = await client.post("/mcp", content=b"[1,", headers={"content-type": "text/plain"})
        elsewhere = await client.post("/other", content=b"[1,", headers=as_json)
    assert passed.status_code == 204 and received[0] == valid  # byte for byte
    assert streamed.status_code == 413 and declared.status_code == 413
    assert "over 1000 bytes" in error_of(streamed)["message"]
    assert (not_json.status_code, elsewhere.status_code) == (204, 204)  # left to the app (the SDK answers 415 there)
    assert received[1:] == [b"[1,", b"[1,"]
