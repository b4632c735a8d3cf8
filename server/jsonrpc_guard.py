"""One JSON-RPC envelope check for every transport, so no message goes unanswered.

The SDK's stdio transport hands what it cannot parse or validate to the dispatcher, which logs it at DEBUG and drops
it; over HTTP a request whose ``id`` is a float, an object or null validates as a *notification* (202, no answer).
Either way the client waits forever. :func:`check_message` looks at one raw message first and returns either the
parsed message or the :class:`Rejection` to send instead: parse error (-32700, id null) or invalid request (-32600,
with the id when one can be read). The stdio transport (:mod:`server.stdio`) writes rejections itself;
:class:`JsonRpcGuardMiddleware` answers them with HTTP 400 in front of the SDK's ``/mcp`` endpoint.

Nesting is bounded before anything recurses (:func:`loads_bounded`), so a deep message costs a linear scan, never a
RecursionError.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from itertools import accumulate
from typing import Any

import pydantic_core
from mcp.server.transport_security import DEFAULT_MAX_REQUEST_BODY_SIZE
from mcp.types import (
    INVALID_REQUEST,
    PARSE_ERROR,
    ErrorData,
    JSONRPCError,
    JSONRPCMessage,
    JSONRPCNotification,
    JSONRPCRequest,
    JSONRPCResponse,
    RequestId,
)
from pydantic import BaseModel, ValidationError
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger(__name__)

MAX_DEPTH = 64  # arrays/objects inside each other; real MCP traffic stays under 10
MAX_MESSAGE_BYTES = DEFAULT_MAX_REQUEST_BODY_SIZE  # the SDK's HTTP body limit (4 MiB), on every transport
_PEEK_TOKENS = 100_000  # bounds the search for the id of a message too deep to decode

# A bracket, or a JSON string (escapes included; or the unterminated rest of one). Possessive: the scan stays linear.
_TOKEN = re.compile(rb'"(?:[^"\\]++|\\.)*+"?|[\[\]{}]', re.DOTALL)
_ESCAPE = re.compile(rb"\\.", re.DOTALL)
_NOT_STRUCTURE = bytes(b for b in range(256) if b not in b'"[]{}')
_STEP = [0] * 256
_STEP[ord("[")] = _STEP[ord("{")] = 1
_STEP[ord("]")] = _STEP[ord("}")] = -1


class JsonTooDeepError(ValueError):
    """The document nests arrays and objects deeper than allowed."""


def nesting_depth(data: bytes) -> int:
    """How deep arrays and objects nest in ``data``, without decoding it: a few passes in C, no recursion.

    Escapes go first (so no quote is escaped any more), then everything but quotes and brackets; what lies between
    the 1st and 2nd quote, the 3rd and 4th, ... was inside strings. Exact for valid JSON; for invalid JSON an upper
    bound of how deep a decoder gets before it fails.
    """
    structure = _ESCAPE.sub(b"", data).translate(None, _NOT_STRUCTURE)
    brackets = b"".join(structure.split(b'"')[0::2])
    return max(accumulate(map(_STEP.__getitem__, brackets)), default=0)


def loads_bounded(data: bytes | str, *, max_depth: int = MAX_DEPTH) -> Any:
    """Decode untrusted UTF-8 JSON that nests at most ``max_depth`` levels.

    Raises :class:`JsonTooDeepError` (a ``ValueError``) for deeper documents and ``ValueError`` for anything that is
    not JSON; never ``RecursionError``. NaN and Infinity are read, as the SDK's own parser reads them (the tools'
    argument validation refuses them where a finite number is needed). Callers bound the size.
    """
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    if nesting_depth(raw) > max_depth:
        raise JsonTooDeepError(f"JSON nests deeper than {max_depth} levels")
    return pydantic_core.from_json(data)  # the SDK's own parser: what passes here, passes there


@dataclass(frozen=True, slots=True)
class Rejection:
    """The JSON-RPC error that answers a message the server cannot take."""

    id: RequestId | None
    code: int
    message: str

    def response(self) -> JSONRPCError:
        return JSONRPCError(jsonrpc="2.0", id=self.id, error=ErrorData(code=self.code, message=self.message))

    def body(self) -> bytes:
        return self.response().model_dump_json(by_alias=True, exclude_unset=True).encode()


def _is_id(value: object) -> bool:
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


def _kind(value: object) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", float: "a fractional number", dict: "an object", list: "an array"}.get(
        type(value), type(value).__name__
    )


def peek_id(data: bytes) -> RequestId | None:
    """The top-level ``"id"`` of a message too deep or too large to decode, when it can be read cheaply, else None."""
    if not data.lstrip().startswith(b"{"):
        return None
    depth = 0
    for count, match in enumerate(_TOKEN.finditer(data)):
        token = match.group()
        if count > _PEEK_TOKENS:
            return None
        if token in (b"{", b"["):
            depth += 1
        elif token in (b"}", b"]"):
            depth -= 1
            if depth <= 0:
                return None
        elif depth == 1 and token == b'"id"':
            rest = data[match.end() : match.end() + 300].lstrip()
            if not rest.startswith(b":"):
                continue  # "id" was a value, not a key
            try:
                value, _ = json.JSONDecoder().raw_decode(rest[1:].lstrip().decode("utf-8", "ignore"))
            except ValueError:
                return None
            return value if _is_id(value) else None
    return None


def _invalid(rid: RequestId | None, why: str) -> Rejection:
    return Rejection(rid, INVALID_REQUEST, f"Invalid request: {why}")


def _envelope_problem(message: dict[str, Any]) -> Rejection | None:
    """What is wrong with the envelope of a decoded JSON object, before the SDK's models look at it."""
    rid = message.get("id")
    readable = rid if _is_id(rid) else None
    if message.get("jsonrpc") != "2.0":
        return _invalid(readable, 'set "jsonrpc": "2.0"')
    if "method" in message:
        if not isinstance(message["method"], str):
            return _invalid(readable, '"method" must be a string')
        if "id" in message and not _is_id(rid):
            return _invalid(None, f'"id" must be a string or an integer, not {_kind(rid)}')
        return None
    if "result" not in message and "error" not in message:
        return _invalid(readable, 'no "method": a request or notification needs one')
    if "id" in message and rid is not None and not _is_id(rid):
        return _invalid(None, f'"id" must be a string or an integer, not {_kind(rid)}')
    return None


def _model_for(message: dict[str, Any]) -> type[BaseModel]:
    if "method" in message:
        return JSONRPCRequest if "id" in message else JSONRPCNotification
    return JSONRPCError if "error" in message else JSONRPCResponse


def too_large(prefix: bytes, limit: int = MAX_MESSAGE_BYTES) -> Rejection:
    """The answer to a message over ``limit`` bytes, of which only ``prefix`` was kept."""
    return _invalid(peek_id(prefix), f"the message is over {limit} bytes; send less per message")


def check_message(data: bytes) -> JSONRPCMessage | Rejection:
    """The message in ``data`` (one JSON-RPC object), or the error response to send instead."""
    if len(data) > MAX_MESSAGE_BYTES:
        return too_large(data[:MAX_MESSAGE_BYTES])
    try:
        decoded = loads_bounded(data)
    except JsonTooDeepError:
        return _invalid(peek_id(data), f"arrays and objects nest deeper than {MAX_DEPTH} levels; send flatter JSON")
    except ValueError:
        return Rejection(None, PARSE_ERROR, "Parse error: not valid JSON (send one UTF-8 JSON-RPC object per message)")
    if isinstance(decoded, list):
        return _invalid(None, "batches (JSON arrays) are not supported; send one JSON-RPC object per message")
    if not isinstance(decoded, dict):
        return _invalid(None, "expected a JSON-RPC object")
    problem = _envelope_problem(decoded)
    if problem is not None:
        return problem
    model = _model_for(decoded)
    try:
        message: JSONRPCMessage = model.model_validate(decoded, by_name=False)  # type: ignore[assignment]
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "message"
        rid = decoded.get("id")
        return _invalid(rid if _is_id(rid) else None, f"{where}: {first['msg']}")
    return message


def log_rejection(transport: str, rejection: Rejection) -> None:
    """One warning per refused message: what the client got back (never the message itself; a long id shortened)."""
    shown = json.dumps(rejection.id)
    logger.warning(
        "%s: refused a message (JSON-RPC %d, id %s): %s",
        transport,
        rejection.code,
        shown if len(shown) <= 80 else shown[:77] + "...",
        rejection.message,
    )


class JsonRpcGuardMiddleware:
    """ASGI middleware for the MCP endpoint: every ``POST`` body passes :func:`check_message` before the SDK reads it.

    A refused message gets HTTP 400 with the JSON-RPC error; a body over ``max_body`` gets 413 without being read
    further; anything else reaches the app byte for byte. Requests that are not JSON, or that an authentication
    middleware in front marked unauthenticated, pass untouched so the SDK answers them (415, 401) as before.
    """

    def __init__(self, app: ASGIApp, path: str = "/mcp", max_body: int = MAX_MESSAGE_BYTES) -> None:
        self.app = app
        self.path = path
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self._applies(scope):
            await self.app(scope, receive, send)
            return
        declared = _header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body:
            await self._refuse(send, 413, too_large(b"", self.max_body))
            return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away while sending
            body += message.get("body", b"")
            if len(body) > self.max_body:
                await self._refuse(send, 413, too_large(bytes(body[:65536]), self.max_body))
                return
            if not message.get("more_body", False):
                break
        outcome = check_message(bytes(body))
        if isinstance(outcome, Rejection):
            await self._refuse(send, 400, outcome)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()  # afterwards the connection's own messages (a disconnect)

        await self.app(scope, replay, send)

    def _applies(self, scope: Scope) -> bool:
        if scope["type"] != "http" or scope.get("method") != "POST" or scope.get("path") != self.path:
            return False
        user = scope.get("user")
        if user is not None and not getattr(user, "is_authenticated", True):
            return False
        content_type = (_header(scope, b"content-type") or "").split(";")[0].strip().lower()
        return content_type == "application/json"

    async def _refuse(self, send: Send, status: int, rejection: Rejection) -> None:
        log_rejection("HTTP", rejection)
        payload = rejection.body()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
        if status == 413:
            headers.append((b"connection", b"close"))  # the rest of the body is never read
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


def guard_json_rpc(app: Starlette, path: str = "/mcp") -> None:
    """Put :class:`JsonRpcGuardMiddleware` in ``app`` for ``path``, innermost: after the SDK's authentication, so an
    unauthenticated client still gets 401 and never has its body read here."""
    app.user_middleware.append(Middleware(JsonRpcGuardMiddleware, path=path))
