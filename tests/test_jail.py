"""The jail of generated code, through the real pipeline: ``generate_component`` with the scripted model, whose
component does something hostile that its own test then checks. In the jail each attempt fails, the validation says
so, and the server goes on; with the operator's ``SELF_BUILDING_SANDBOX=none`` the same code is run unjailed (and
succeeds, which is what the jail is for); where the jail cannot start, generated code is not run at all."""

from __future__ import annotations

import logging
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from mcp.server.mcpserver import MCPServer

from generators.validation import StageName
from generators.validation.jail import Jail
from server.settings import Settings
from tests.conftest import JAIL_READY, SANDBOX, call, connect
from tests.fakes import FakeHostSource
from tests.llm_server import ScriptedLLM
from tests.polling import eventually_sync
from tests.test_generation_tool import build as generation_server
from tests.test_validation import processes_with

pytestmark = pytest.mark.anyio
needs_jail = pytest.mark.skipif(
    not JAIL_READY and not os.environ.get("SELF_BUILDING_REQUIRE_JAIL"),
    reason="bubblewrap cannot start a jail here (.ci/run installs it and requires it)",
)
STAGES: tuple[StageName, ...] = (
    "syntax",
    "tests",
)  # the static checks would catch some of these first: here the jail alone must
ARGS = {"component_type": "utility", "requirements": "Probe the sandbox.", "name": "probe"}
FORKS = 300  # more than the jail lets the user have (sandbox_max_processes below), few enough to be harmless


def reply(body: str) -> str:
    """A component whose ``probe()`` runs ``body`` (it returns "done" when the attempt worked), and its test."""
    indented = "\n".join(f"    {line}" for line in body.strip().splitlines())
    return f'''components/probe.py
```python
"""A probe."""

import os
import socket
import time
from pathlib import Path


def probe() -> str:
    """Try it."""
{indented}
    return "done"
```

tests/test_probe.py
```python
"""Tests of probe."""

from components.probe import probe


def test_probe() -> None:
    """The attempt worked."""
    assert probe() == "done"
```
'''


FORK_BODY = f"""
read, write = os.pipe()
children = []
try:
    for _ in range({FORKS}):
        pid = os.fork()
        if pid == 0:
            os.close(write)
            os.read(read, 1)  # held until the parent lets go
            os._exit(0)
        children.append(pid)
finally:
    os.close(write)
    for pid in children:
        os.waitpid(pid, 0)
"""


USERNS_BODY = """
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
if libc.unshare(0x10000000) != 0:  # CLONE_NEWUSER: where most kernel privilege escalations start
    raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
"""


def cases(tmp_path: Path, settings: Settings, llm: ScriptedLLM) -> dict[str, tuple[str, str]]:
    """Each hostile attempt: the probe's body, and what its failure says in the jail."""
    secret = settings.data_dir / "secret.txt"
    key = Path(os.environ["HOME"]) / ".ssh" / "id_ed25519"
    port = int(llm.base_url.rsplit(":", 1)[1].split("/")[0])
    return {
        "reads the data directory": (f"Path({str(secret)!r}).read_text()", "FileNotFoundError"),
        "reads ~/.ssh": (f"Path({str(key)!r}).read_text()", "FileNotFoundError"),
        "opens a socket to 127.0.0.1": (
            f"socket.create_connection(('127.0.0.1', {port}), timeout=5).close()",
            "Network is unreachable|Connection refused",
        ),
        "writes outside its copy": (
            f"Path({str(tmp_path / 'escaped.txt')!r}).write_text('out')",
            "FileNotFoundError|PermissionError|Read-only file system",
        ),
        "reads the server's environment (its API keys)": (
            f"Path('/proc/{os.getpid()}/environ').read_bytes()",
            "FileNotFoundError",
        ),
        "forks without end": (FORK_BODY, "BlockingIOError|Resource temporarily unavailable"),
        "allocates without end": ("blocks = [bytearray(256 << 20) for _ in range(64)]", "MemoryError"),
        "creates a user namespace": (USERNS_BODY, "PermissionError|OSError"),
    }


@pytest.fixture
def hostile_world(tmp_path: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """A secret in the data directory and a key in the (server user's) home, as a real host has them."""
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "id_ed25519").write_text("PRIVATE KEY", encoding="utf-8")
    monkeypatch.setenv("HOME", str(home))
    settings.data_dir.mkdir(parents=True)
    (settings.data_dir / "secret.txt").write_text("a secret", encoding="utf-8")


def build(settings: Settings, host: FakeHostSource, llm: ScriptedLLM, **overrides: Any) -> MCPServer:
    """The server with the scripted model, one round, and only the stages that leave the jail as the one barrier."""
    return generation_server(settings, host, llm, STAGES, generation_max_rounds=1, **overrides)


async def generate(server: MCPServer, llm: ScriptedLLM, body: str) -> dict[str, Any]:
    llm.reply(reply(body))
    async with connect(server) as client:
        out = await call(client, "generate_component", ARGS)
        status = await call(client, "get_system_status")
    out["sandbox"] = status["sandbox"]
    return out


@needs_jail
@pytest.mark.parametrize(
    "attempt",
    [
        "reads the data directory",
        "reads ~/.ssh",
        "opens a socket to 127.0.0.1",
        "writes outside its copy",
        "reads the server's environment (its API keys)",
        "forks without end",
        "allocates without end",
        "creates a user namespace",
    ],
)
async def test_hostile_generated_code_fails_inside_the_jail_and_the_server_goes_on(
    attempt: str,
    tmp_path: Path,
    settings: Settings,
    host: FakeHostSource,
    scripted_llm: ScriptedLLM,
    hostile_world: None,
) -> None:
    body, said = cases(tmp_path, settings, scripted_llm)[attempt]
    server = build(settings, host, scripted_llm, sandbox="bwrap", sandbox_max_processes=64)
    out = await generate(server, scripted_llm, body)
    assert out["succeeded"] is False, out["validation_text"]
    assert "TST001" in out["validation_text"] and re.search(said, out["validation_text"]), out["validation_text"]
    assert out["sandbox"].startswith("jailed: bubblewrap"), out["sandbox"]  # and it answered: the server goes on
    assert out["sandbox"].endswith(", no user namespaces"), out["sandbox"]  # as the probe found
    assert not (tmp_path / "escaped.txt").exists()


async def test_with_the_jail_turned_off_the_same_code_runs_and_start_up_warns(
    tmp_path: Path,
    settings: Settings,
    host: FakeHostSource,
    scripted_llm: ScriptedLLM,
    hostile_world: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    body, _ = cases(tmp_path, settings, scripted_llm)["writes outside its copy"]
    with caplog.at_level(logging.WARNING, logger="generators.validation.jail"):
        out = await generate(build(settings, host, scripted_llm, sandbox="none"), scripted_llm, body)
    assert out["succeeded"] is True, out["validation_text"]  # what the jail stops, unjailed code does
    assert (tmp_path / "escaped.txt").read_text(encoding="utf-8") == "out"
    assert out["sandbox"].startswith("UNJAILED: "), out["sandbox"]
    assert any("SELF_BUILDING_SANDBOX=none" in r.getMessage() for r in caplog.records), caplog.text


async def test_where_the_jail_cannot_start_generated_code_is_refused_with_the_fix(
    tmp_path: Path, settings: Settings, host: FakeHostSource, scripted_llm: ScriptedLLM
) -> None:
    server = build(settings, host, scripted_llm, sandbox="bwrap", sandbox_bwrap=str(tmp_path / "no-bwrap"))
    out = await generate(server, scripted_llm, "pass")
    assert out["succeeded"] is False
    text = out["validation_text"]
    assert "JAIL001" in text and "generated code is not run" in text, text
    assert "apt install bubblewrap" in text and "SELF_BUILDING_SANDBOX=none" in text, text
    assert out["sandbox"].startswith("refused: bubblewrap"), out["sandbox"]


async def test_a_tenants_tests_do_not_see_another_tenants_code(
    settings: Settings, host: FakeHostSource, scripted_llm: ScriptedLLM
) -> None:
    """globex's generated tests run on a copy without acme's folders: its code (and tests) cannot be read back."""
    for path in ("components/acme/secret_sauce.py", "tests/acme/test_secret_sauce.py"):
        (settings.workspace / path).parent.mkdir(parents=True, exist_ok=True)
        (settings.workspace / path).write_text('RECIPE = "acme only"\n', encoding="utf-8")
    body = "Path(__file__).parents[1].joinpath('acme', 'secret_sauce.py').read_text()"
    text = reply(body).replace("components/probe.py", "components/globex/probe.py")
    text = text.replace("tests/test_probe.py", "tests/globex/test_probe.py").replace(
        "components.probe", "components.globex.probe"
    )
    scripted_llm.reply(text)
    async with connect(build(settings, host, scripted_llm, sandbox=SANDBOX)) as client:
        out = await call(client, "generate_component", {**ARGS, "tenant_id": "globex"})
    assert out["succeeded"] is False, out["validation_text"]
    assert "FileNotFoundError" in out["validation_text"] and "acme only" not in out["validation_text"]


@needs_jail
def test_a_jail_ends_when_its_servers_end_of_the_lifeline_closes(tmp_path: Path) -> None:
    """However the server dies, the kernel closes its end of a run's lifeline, and the jail ends: the run and what
    it started. This holds without bubblewrap's parent-death signal (off here), which once left a jail running, and
    whatever signals the run sends its watcher."""
    jail = Jail("bwrap")
    folder = tmp_path / "run"
    folder.mkdir()
    jail.prepare(folder)
    marker = f"lifeline-{os.getpid()}-{id(folder)}"
    code = (
        "import signal, subprocess, time\n"
        f"subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)', '{marker}'])\n"
        "for number in (signal.SIGKILL, signal.SIGSTOP, signal.SIGINT, signal.SIGTERM):\n"
        "    os.kill(1, number)  # the watcher, the jail's pid 1: none of these reaches it\n"
        "print('started', flush=True)\n"
        "time.sleep(600)\n"
    )
    with jail.lifeline() as lifeline:
        inner = jail.launch(code, ["0", "0", "0"], folder, [marker], lifeline=lifeline)
        process = subprocess.Popen(
            jail.command(inner, folder, die_with_parent=False, lifeline=lifeline),
            stdout=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            pass_fds=lifeline.fds,
            start_new_session=True,
        )
        lifeline.started()
        assert process.stdout is not None and process.stdout.readline() == b"started\n"
        assert len(processes_with(marker)) >= 2, "the run and its child run"
    # the server's end is closed (as the kernel closes it when the server dies)
    assert process.wait(timeout=60) == 137
    eventually_sync(lambda: not processes_with(marker), "every process of the jail ended")
    process.stdout.close()


@needs_jail
def test_a_run_that_ends_leaves_nothing_running_in_its_jail(tmp_path: Path) -> None:
    """A run that started a process and ended: its jail ends with it, that process too (its watcher is the jail's
    pid 1; when it exits, the kernel ends the rest)."""
    jail = Jail("bwrap")
    folder = tmp_path / "run"
    folder.mkdir()
    jail.prepare(folder)
    marker = f"left-behind-{os.getpid()}-{id(folder)}"
    code = f"import subprocess\nsubprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)', '{marker}'])\n"
    with jail.lifeline() as lifeline:
        inner = jail.launch(code + "os._exit(3)\n", ["0", "0", "0"], folder, [], lifeline=lifeline)
        done = subprocess.run(
            jail.command(inner, folder, die_with_parent=False, lifeline=lifeline),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            pass_fds=lifeline.fds,
            timeout=60,
            check=False,
        )
        assert done.returncode == 3, done.stderr  # the run's own exit code
        eventually_sync(lambda: not processes_with(marker), "the process the run left behind ended")
