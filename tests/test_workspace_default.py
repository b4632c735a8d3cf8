"""The workspace defaults to the server's own folder in the data directory, never the current directory: started
from a clone without SELF_BUILDING_WORKSPACE, a deployed component and a saved script land under
``<data_dir>/workspace`` and the clone is untouched. Start-up says where the workspace is and whether it was the
default, and warns when the workspace overlaps the server's own source tree."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client

from server.app import create_server
from server.settings import Settings
from tests.conftest import ServerFactory, call, connect
from tests.fakes import FakeHostSource, NoGpu
from tests.llm_server import ScriptedLLM
from tests.test_generation_tool import ARGS, slugify_reply

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).resolve().parents[1]


def clone_like(folder: Path) -> dict[str, bytes]:
    """A folder that looks like a checkout of this project (a git repository when git is installed); its files."""
    (folder / "components").mkdir(parents=True)  # no server/ package: ``python -m server`` would import it
    (folder / "pyproject.toml").write_text('[project]\nname = "self-building-mcp"\n', encoding="utf-8")
    (folder / "README.md").write_text("# self-building-mcp\n", encoding="utf-8")
    if shutil.which("git"):
        subprocess.run(["git", "init", "-q", str(folder)], check=True, timeout=60)
    return snapshot(folder)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.slow
async def test_started_from_a_clone_without_a_workspace_it_writes_only_into_the_data_directory(
    tmp_path: Path, scripted_llm: ScriptedLLM
) -> None:
    clone, data = tmp_path / "clone", tmp_path / "data"
    before = clone_like(clone)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SELF_BUILDING_")}
    env.update(
        SELF_BUILDING_DATA_DIR=str(data),
        SELF_BUILDING_LLM_BASE_URL=scripted_llm.base_url,
        SELF_BUILDING_LLM_MODEL="m",
        SELF_BUILDING_LLM_API_KEY="k",
        SELF_BUILDING_LLM_MAX_RETRIES="0",
    )
    params = StdioServerParameters(command=sys.executable, args=["-m", "server", "serve"], env=env, cwd=str(clone))
    scripted_llm.reply(slugify_reply())
    with (tmp_path / "stderr.log").open("w", encoding="utf-8") as errlog:
        async with Client(stdio_client(params, errlog=errlog)) as client:
            made = await call(client, "generate_component", {**ARGS, "deploy": True})
            saved = await call(client, "save_script", {"issue_type": "cpu_high", "platform": "bash"})
    stderr = (tmp_path / "stderr.log").read_text(encoding="utf-8")
    workspace = data / "workspace"
    assert f"workspace: {workspace} (the default, in the data directory; created now)" in stderr, stderr
    assert made["deployment"]["status"] == "deployed"
    assert (workspace / "components" / "slugify.py").is_file() and (workspace / "tests" / "test_slugify.py").is_file()
    assert saved["path"] == str(workspace / "scripts" / "fix_cpu_high.sh")
    assert snapshot(clone) == before  # nothing was written into the checkout the server was started from
    assert "source tree" not in stderr


async def test_start_up_says_where_the_workspace_is_and_warns_about_the_source_tree(
    make_server: ServerFactory,
    settings: Settings,
    host: FakeHostSource,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.delenv("SELF_BUILDING_WORKSPACE", raising=False)
    default = Settings(data_dir=settings.data_dir, status_max_age_seconds=3600)  # no workspace named
    with caplog.at_level(logging.INFO, logger="server.builders"):
        async with connect(create_server(default, host_source=host, gpu_source=NoGpu())):
            pass
        said = [(r.levelno, r.getMessage()) for r in caplog.records]
        caplog.clear()
        async with connect(make_server(workspace=ROOT)):  # an operator who names the clone itself is told
            pass
        own_tree = [(r.levelno, r.getMessage()) for r in caplog.records]
    workspace = settings.data_dir / "workspace"
    assert said == [(logging.INFO, f"workspace: {workspace} (the default, in the data directory; created now)")]
    assert (
        logging.INFO,
        f"workspace: {ROOT} (named by SELF_BUILDING_WORKSPACE, --workspace or the config file)",
    ) in own_tree
    assert (logging.WARNING, (
        f"the workspace {ROOT} is or holds the server's own source tree {ROOT}: generated code, deployments (and "
        "their git commits) and saved scripts go into it. If that is not meant, set SELF_BUILDING_WORKSPACE to "
        "another folder"
    )) in own_tree  # fmt: skip
