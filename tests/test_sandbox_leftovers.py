"""Sandbox copies of the workspace live in the server's own folder (``<data_dir>/sandbox-scratch/<pid>-<random>``):
a server killed by SIGKILL in the middle of a validation leaves its copy (and no test still running in it), the next
start removes it, and a server that still runs on the same data directory keeps its folder."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import psutil
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client

from tests.conftest import SANDBOX, call
from tests.llm_server import ScriptedLLM
from tests.polling import eventually
from tests.test_generation_tool import ARGS

pytestmark = [pytest.mark.anyio, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[1]

# A component whose test does not end by itself: the validation is still in the sandbox when the server is killed.
STUCK_REPLY = '''Here is the component.

components/slugify.py
```python
"""Turn titles into URL slugs."""

import re


def slugify(title: str) -> str:
    """Lower-case words of ``title`` joined by hyphens."""
    return "-".join(re.findall(r"[a-z0-9]+", title.lower()))
```

tests/test_slugify.py
```python
"""Tests of slugify."""

import time

from components.slugify import slugify


def test_slugify_joins_words() -> None:
    """Words are joined by hyphens (after a long wait)."""
    time.sleep(600)
    assert slugify("Hello, World") == "hello-world"
```
'''


def params(tmp_path: Path, llm: ScriptedLLM) -> StdioServerParameters:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SELF_BUILDING_")}
    env.update(
        SELF_BUILDING_DATA_DIR=str(tmp_path / "data"),
        SELF_BUILDING_WORKSPACE=str(tmp_path / "ws"),
        SELF_BUILDING_LLM_BASE_URL=llm.base_url,
        SELF_BUILDING_LLM_MODEL="m",
        SELF_BUILDING_SANDBOX=SANDBOX,
        SELF_BUILDING_LLM_API_KEY="k",
        SELF_BUILDING_LLM_MAX_RETRIES="0",
    )
    return StdioServerParameters(command=sys.executable, args=["-m", "server", "serve"], env=env, cwd=str(ROOT))


@asynccontextmanager
async def running(tmp_path: Path, llm: ScriptedLLM, name: str) -> AsyncIterator[tuple[Client, Path]]:
    """A server started (its lifespan run) and the folder its sandbox copies go into."""
    before = set(scratch_folders(tmp_path))
    with (tmp_path / f"{name}.log").open("w", encoding="utf-8") as errlog:
        async with Client(stdio_client(params(tmp_path, llm), errlog=errlog)) as client:
            await call(client, "get_system_status")
            [own] = set(scratch_folders(tmp_path)) - before
            yield client, own


def scratch_folders(tmp_path: Path) -> list[Path]:
    parent = tmp_path / "data" / "sandbox-scratch"
    return sorted(p for p in parent.iterdir() if p.is_dir()) if parent.is_dir() else []


def processes_in(folder: Path) -> list[psutil.Process]:
    """Processes whose working directory lies in ``folder``."""
    found = []
    for process in psutil.process_iter():
        try:
            if Path(process.cwd()).is_relative_to(folder):
                found.append(process)
        except (psutil.Error, OSError):
            continue
    return found


async def kill_mid_validation(tmp_path: Path, llm: ScriptedLLM) -> Path:
    """Start a server, ask for a component, SIGKILL the server while its tests run; return its folder."""
    llm.reply(STUCK_REPLY)
    killed: Path | None = None
    with (tmp_path / "killed.log").open("w", encoding="utf-8") as errlog:
        try:
            async with (
                Client(stdio_client(params(tmp_path, llm), errlog=errlog)) as client,
                anyio.create_task_group() as group,
            ):
                group.start_soon(client.call_tool, "generate_component", ARGS)
                scratch = tmp_path / "data" / "sandbox-scratch"
                await eventually(lambda: any(scratch.glob("*/validate-sandbox-*/ws")), "a sandbox copy", timeout=120)
                [copy] = scratch.glob("*/validate-sandbox-*/ws")
                await eventually(lambda: bool(processes_in(copy)), "pytest running in the copy", timeout=120)
                killed = copy.parent.parent
                os.kill(int(killed.name.split("-")[0]), signal.SIGKILL)
                group.cancel_scope.cancel()
        except Exception:  # the connection dies with the server; what matters is what it left on disk
            pass
    assert killed is not None, (tmp_path / "killed.log").read_text(encoding="utf-8")
    return killed


async def test_the_next_start_removes_what_a_killed_server_left_but_not_a_live_servers_folder(
    tmp_path: Path, scripted_llm: ScriptedLLM
) -> None:
    left = await kill_mid_validation(tmp_path, scripted_llm)
    assert any(left.glob("validate-sandbox-*/ws/tests/test_slugify.py"))  # the kill left the copy behind
    # and no test runs on in it: the sandbox dies with its server
    await eventually(lambda: not processes_in(left), "the sandbox died with its server")

    async with running(tmp_path, scripted_llm, "first") as (_, first):
        assert not left.exists()  # removed at start-up
        assert not left.with_name(left.name + ".lock").exists()
        async with running(tmp_path, scripted_llm, "second") as (_, second):
            assert first.is_dir()  # a server of the same data directory still runs: its folder stays
            assert scratch_folders(tmp_path) == sorted([first, second])
        assert not second.exists()  # a normal shutdown tidies its own folder
    assert scratch_folders(tmp_path) == []
