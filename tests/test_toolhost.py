"""A generated tool's worker (in the jail where it can start): it describes the tool from its signature, answers
calls, and a crash, a hang or an oversized answer ends only that call (the next one gets a new worker)."""

from __future__ import annotations

import hashlib
import os
import signal
import sqlite3
import threading
from pathlib import Path

import pytest

from generators.errors import GeneratedToolError, ToolArgumentsError, ToolCrashedError, ToolWorkerError
from generators.toolhost import ToolWorker, WorkerLimits
from generators.toolhost.registry import code_digest
from generators.toolhost.store import SqliteToolStore, ToolRecord
from generators.validation.jail import Jail
from tests.polling import eventually_sync
from tests.test_validation import processes_with

TOOL = '''"""Durations."""

import os
import re
import time

from pydantic import BaseModel, Field


class Parsed(BaseModel):
    seconds: int = Field(description="Whole seconds.")
    parts: int


def duration_seconds(text: str, mode: str = "normal") -> Parsed:
    """Seconds in a duration like '1h30m'."""
    if mode == "crash":
        os._exit(3)
    if mode == "hang":
        time.sleep(600)
    if mode == "huge":
        return Parsed(seconds=10**80, parts=1)
    if mode == "fail":
        raise ValueError("not a duration: " + text)
    if mode == "greedy":
        blocks = [bytearray(64 << 20) for _ in range(64)]
    if mode == "deaf":  # the worker reads another pipe from now on: nothing reads its requests any more
        os.dup2(os.pipe()[0], 0)
    if mode == "write":
        open(os.path.join(os.path.dirname(__file__), "mine.txt"), "w").close()
    found = re.findall(r"(\\d+)([hms])", text)
    scale = {"h": 3600, "m": 60, "s": 1}
    return Parsed(seconds=sum(int(n) * scale[u] for n, u in found), parts=len(found))


def echo(text: str) -> str:
    """The text, as given."""
    return text
'''


@pytest.fixture
def code(tmp_path: Path) -> Path:
    root = tmp_path / "code"
    (root / "components").mkdir(parents=True)
    (root / "components" / "__init__.py").write_text("", encoding="utf-8")
    (root / "components" / "durations.py").write_text(TOOL, encoding="utf-8")
    for folder in (tmp_path, root, root / "components"):
        folder.chmod(0o755)  # read by the jail's user
    return root


def worker(code: Path, function: str = "duration_seconds", **limits: float) -> ToolWorker:
    return ToolWorker(Jail(), code, "components.durations", function, WorkerLimits(**limits))  # type: ignore[arg-type]


def test_the_tool_is_described_from_its_signature_and_answers(code: Path) -> None:
    tool = worker(code)
    try:
        spec = tool.describe()
        assert spec.description == "Seconds in a duration like '1h30m'."
        assert spec.input_schema["required"] == ["text"] and spec.input_schema["additionalProperties"] is False
        assert spec.output_schema["properties"]["seconds"]["description"] == "Whole seconds."
        assert tool.call({"text": "1h30m"}) == {"seconds": 5400, "parts": 2}
        assert tool.call({"text": "2m5s"}) == {"seconds": 125, "parts": 2}
        assert tool.starts == 1  # one long-lived process for all calls
    finally:
        tool.close()


def test_a_result_that_is_not_an_object_is_wrapped(code: Path) -> None:
    tool = worker(code, "echo")
    try:
        assert tool.describe().output_schema["required"] == ["result"]
        assert tool.call({"text": "hi"}) == {"result": "hi"}
    finally:
        tool.close()


def test_bad_arguments_and_the_tools_own_errors_are_told_and_the_worker_goes_on(code: Path) -> None:
    tool = worker(code)
    try:
        with pytest.raises(ToolArgumentsError, match="text"):
            tool.call({"txt": "1h"})
        with pytest.raises(GeneratedToolError, match="ValueError: not a duration: soon") as refused:
            tool.call({"text": "soon", "mode": "fail"})
        assert not isinstance(refused.value, ToolCrashedError)  # its refusal of the input, not a fault of its code
        with pytest.raises(ToolCrashedError, match="MemoryError"):
            tool.call({"text": "1h", "mode": "greedy"})
        assert tool.call({"text": "1h"}) == {"seconds": 3600, "parts": 1} and tool.starts == 1
    finally:
        tool.close()


@pytest.mark.parametrize(
    ("mode", "said"),
    [("crash", "died"), ("hang", "did not answer the call within 1 s"), ("huge", "may answer at most 64")],
)
def test_a_crash_a_hang_or_an_oversized_answer_ends_that_call_only(code: Path, mode: str, said: str) -> None:
    tool = worker(code, call_seconds=1, max_answer_bytes=64)
    try:
        tool.describe()
        with pytest.raises(ToolCrashedError, match=said):
            tool.call({"text": "1h", "mode": mode})
        assert tool.call({"text": "1s"}) == {"seconds": 1, "parts": 1}  # the next call is served
    finally:
        tool.close()
    # Nothing of it is left running (a hung tool ignores the EOF on its stdin: it must be killed, jail and all).
    eventually_sync(lambda: not processes_with(str(code)), "every process of the worker ended", timeout=10)


def test_a_worker_that_reads_no_more_requests_cannot_hold_a_call_past_its_time(code: Path) -> None:
    """A request larger than the pipe holds, to a worker that stopped reading: the write is bounded by the call's
    time like the answer (it used to block the call, and its thread, for ever)."""
    tool = worker(code, call_seconds=2)
    outcome: list[object] = []

    def big_call() -> None:
        try:
            outcome.append(tool.call({"text": "1h" * 200_000}))
        except ToolWorkerError as exc:
            outcome.append(exc)

    try:
        assert tool.call({"text": "1h", "mode": "deaf"}) == {"seconds": 3600, "parts": 1}
        caller = threading.Thread(target=big_call)
        caller.start()
        caller.join(timeout=60)
        blocked = caller.is_alive()
        if blocked:  # end the worker, so that the call (and the test) can end
            for pid in processes_with(str(code)):
                os.kill(pid, signal.SIGKILL)
            caller.join()
        assert not blocked, "the call was still blocked on writing its request after 60 s"
        [error] = outcome
        assert isinstance(error, ToolWorkerError), error
        assert tool.call({"text": "1s"}) == {"seconds": 1, "parts": 1}  # a new worker serves the next call
    finally:
        tool.close()


@pytest.mark.skipif(not Jail().enabled, reason="bubblewrap cannot start a jail here")
def test_in_the_jail_a_tool_cannot_write_even_its_own_folder(code: Path) -> None:
    tool = worker(code)
    try:
        with pytest.raises(GeneratedToolError, match=r"Read-only file system|Permission denied"):
            tool.call({"text": "1h", "mode": "write"})
        assert not (code / "components" / "mine.txt").exists()
    finally:
        tool.close()


def test_a_tool_that_cannot_be_loaded_is_refused_with_the_reason(code: Path) -> None:
    (code / "components" / "durations.py").write_text("import no_such_module\n", encoding="utf-8")
    tool = worker(code)
    with pytest.raises(ToolWorkerError, match="cannot be loaded: ModuleNotFoundError"):
        tool.describe()


def test_a_worker_outlives_the_thread_that_started_it_and_a_closed_one_stays_closed(code: Path) -> None:
    """Workers are started from the server's worker threads, which end when idle: the worker must not die with them
    (it ends at EOF on its stdin instead). Once closed (its tool replaced or removed), calls are refused."""
    tool = worker(code)
    starter = threading.Thread(target=tool.describe)
    starter.start()
    starter.join()
    try:
        assert tool.call({"text": "1h"}) == {"seconds": 3600, "parts": 1}
        assert tool.starts == 1  # the same process: it did not die with its thread
    finally:
        tool.close()
    with pytest.raises(ToolWorkerError, match="replaced or removed"):
        tool.call({"text": "1h"})
    assert tool.starts == 1


def test_code_served_before_the_version_table_existed_keeps_its_number(tmp_path: Path) -> None:
    """A registry from before the versions were kept by code: a rollback to the code it serves gets that code's
    number back, not a new one."""
    path = tmp_path / "tools.sqlite3"
    store = SqliteToolStore(path)
    store.save(ToolRecord("acme", "d", "components/acme/d.py", "active", 4, "a" * 64, "dep", 1.0, 1.0))
    store.close()
    with sqlite3.connect(path) as conn:
        conn.execute("DROP TABLE generated_tool_versions")
    reopened = SqliteToolStore(path)
    try:
        assert reopened.version_of("acme", "d", "b" * 64, served=4) == 5  # new code: the next number
        assert reopened.version_of("acme", "d", "a" * 64, served=5) == 4  # the code served before: its own
    finally:
        reopened.close()


def test_a_tools_version_covers_the_workspace_modules_it_imports(tmp_path: Path) -> None:
    """A change of a helper the tool imports (a sibling, a shared module; followed from module to module) is a new
    version of the tool; a change of a module it does not import is not; a tool that imports none is its module."""
    files = {
        "components/acme/d.py": b"from components.acme.scales import SCALE\nimport components.shared.text\n",
        "components/acme/scales.py": b"from components.shared.units import H\nSCALE = {'h': H}\n",
        "components/shared/text.py": b"X = 1\n",
        "components/shared/units.py": b"H = 3600\n",
        "components/acme/other.py": b"Y = 2\n",
    }
    for name, data in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(data)
    module = "components/acme/d.py"

    def digest() -> str:
        return code_digest(tmp_path, module, (tmp_path / module).read_bytes())

    first = digest()
    (tmp_path / "components/acme/other.py").write_bytes(b"Y = 3\n")
    assert digest() == first  # not imported
    (tmp_path / "components/shared/units.py").write_bytes(b"H = 60 * 60\n")
    assert digest() != first  # imported by what it imports
    plain = b"def d() -> int:\n    return 1\n"
    assert code_digest(tmp_path, module, plain) == hashlib.sha256(plain).hexdigest()
