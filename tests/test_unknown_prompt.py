"""An unknown prompt name is the client's mistake: invalid params (-32602) naming the prompts there are, and no
traceback in the log (the SDK answered JSON-RPC code 0 and logged an ERROR, as for a crash). Over stdio: see
tests/test_stdio_protocol.py."""

from __future__ import annotations

import logging

import pytest
from mcp import MCPError

from tests.conftest import ServerFactory, connect


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_an_unknown_prompt_is_invalid_params(
    make_server: ServerFactory, caplog: pytest.LogCaptureFixture, mode: str
) -> None:
    caplog.set_level(logging.INFO)
    async with connect(make_server(), mode=mode) as client:
        with pytest.raises(MCPError) as raised:
            await client.get_prompt("diagnose_everything", {})
        known = await client.get_prompt("diagnose_system", {})  # the known one still works
    assert raised.value.code == -32602
    assert "'diagnose_everything'" in raised.value.message and "diagnose_system" in raised.value.message
    assert known.messages
    assert [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info] == []
