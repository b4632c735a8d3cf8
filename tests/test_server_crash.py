"""SIGKILL of the real server process in the middle of a deploy (stopped there by the deploy failpoint), then a
restart on the same workspace and data: the workspace holds all old or all new files, never a mix, and the tools
report the deployment as recovery left it."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client

from generators.deploy import DeployError
from generators.deploy.failpoint import failpoint_hook
from server.app import create_server
from server.settings import Settings
from tests.conftest import SANDBOX
from tests.fakes import FakeHostSource, NoGpu
from tests.llm_server import ScriptedLLM
from tests.polling import eventually
from tests.test_generation_tool import ARGS, slugify_reply

ROOT = Path(__file__).resolve().parents[1]
FILES = ("components/slugify.py", "tests/test_slugify.py")


def params(tmp_path: Path, llm: ScriptedLLM, **extra: str) -> StdioServerParameters:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SELF_BUILDING_")}
    env.update(
        SELF_BUILDING_DATA_DIR=str(tmp_path / "data"),
        SELF_BUILDING_WORKSPACE=str(tmp_path / "ws"),
        SELF_BUILDING_LLM_BASE_URL=llm.base_url,
        SELF_BUILDING_LLM_MODEL="m",
        SELF_BUILDING_SANDBOX=SANDBOX,
        SELF_BUILDING_LLM_API_KEY="k",
        SELF_BUILDING_LLM_MAX_RETRIES="0",
        **extra,
    )
    return StdioServerParameters(command=sys.executable, args=["-m", "server", "serve"], env=env, cwd=str(ROOT))


async def kill_mid_deploy(tmp_path: Path, llm: ScriptedLLM, failpoint: str) -> None:
    marker = tmp_path / "stopped.pid"
    server = params(tmp_path, llm, SELF_BUILDING_DEPLOY_FAILPOINT=f"{failpoint}:{marker}")
    killed = False
    with (tmp_path / "first.log").open("w", encoding="utf-8") as errlog:
        try:
            async with Client(stdio_client(server, errlog=errlog)) as client, anyio.create_task_group() as group:
                group.start_soon(client.call_tool, "generate_component", {**ARGS, "deploy": True})
                await eventually(marker.exists, "the server stopped at the failpoint", timeout=120)
                os.kill(int(marker.read_text(encoding="utf-8")), signal.SIGKILL)
                killed = True
                group.cancel_scope.cancel()
        except Exception:  # the connection dies with the server; what matters is what it left on disk
            pass
    assert killed, (tmp_path / "first.log").read_text(encoding="utf-8")


def on_disk(ws: Path) -> dict[str, bool]:
    return {path: (ws / path).exists() for path in FILES}


@pytest.mark.slow
@pytest.mark.anyio
@pytest.mark.parametrize(("failpoint", "expected"), [("temp_written:1", "failed"), ("replaced:1", "deployed")])
async def test_sigkill_of_the_server_mid_deploy_leaves_all_old_or_all_new(
    tmp_path: Path, scripted_llm: ScriptedLLM, failpoint: str, expected: str
) -> None:
    scripted_llm.reply(slugify_reply())
    await kill_mid_deploy(tmp_path, scripted_llm, failpoint)
    ws = tmp_path / "ws"
    if failpoint.startswith("replaced"):
        assert sorted(on_disk(ws).values()) == [False, True], "the kill landed between the two replacements"
    with (tmp_path / "second.log").open("w", encoding="utf-8") as errlog:
        async with Client(stdio_client(params(tmp_path, scripted_llm), errlog=errlog)) as client:
            listed: Any = (await client.call_tool("list_deployments", {})).structured_content
            [deployment] = listed["deployments"]
            detail: Any = await client.call_tool("get_deployment", {"deployment_id": deployment["deployment_id"]})
            audit: Any = (await client.call_tool("query_audit_log", {"kind": "recovery"})).structured_content
    assert deployment["status"] == expected
    state = on_disk(ws)
    assert set(state.values()) == {expected == "deployed"}, state
    files = detail.structured_content["files"]
    assert all(f["current_sha256"] == (f["new_sha256"] if expected == "deployed" else None) for f in files), files
    assert audit["entries"][0]["subject"] == deployment["deployment_id"]
    assert not list((tmp_path / "data" / "deploy-journal").glob("*"))


@pytest.mark.parametrize("spec", ["bogus", "replaced:0:/tmp/x", "replaced:1:", "nowhere:1:/tmp/x"])
def test_a_malformed_failpoint_is_refused(spec: str) -> None:
    with pytest.raises(DeployError, match="STEP:INDEX:MARKER"):
        failpoint_hook(spec)


@pytest.mark.anyio
async def test_a_failed_start_leaves_no_database_open(settings: Settings, tmp_path: Path) -> None:
    """Start-up that fails part-way (the workspace is a file, so the deployer cannot open) closes what it opened."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x", encoding="utf-8")
    server = create_server(
        settings.model_copy(update={"workspace": blocker}), host_source=FakeHostSource(), gpu_source=NoGpu()
    )
    with pytest.raises(BaseException) as failed:  # the lifespan's error, as the in-memory client passes it on
        async with Client(server):
            pass
    assert (
        failed.group_contains(FileExistsError)
        if isinstance(failed.value, BaseExceptionGroup)
        else (isinstance(failed.value, FileExistsError))
    ), repr(failed.value)
    data = str(settings.data_dir)
    still_open = [link for link in _open_files() if link.startswith(data)]
    assert still_open == []


def _open_files() -> list[str]:
    found = []
    for fd in Path("/proc/self/fd").iterdir():
        try:
            found.append(os.readlink(fd))
        except OSError:
            continue
    return found
