"""Deploy, rollback, the version store, git commits, crash recovery and the append-only audit log."""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client

from generators.deploy import (
    Deployer,
    DeployError,
    DirtyWorkspaceError,
    InvalidStateError,
    SqliteAuditLog,
    SqliteVersionStore,
    UnsafePathError,
    WorkspaceChangedError,
)
from generators.deploy.audit import AuditLog
from generators.deploy.audit_pg import PostgresAuditLog
from generators.deploy.journal import read_journals
from generators.deploy.store import VersionStore
from generators.deploy.store_pg import PostgresVersionStore
from generators.pg_db import PostgresDatabase
from tests.deploy_crash_child import FILE_COUNT, URL_ENV, close_databases, new_files, open_deployer
from tests.postgres_server import PostgresServer, postgres  # noqa: F401 - the fixture

ROOT = Path(__file__).resolve().parent.parent
ORIGINALS = {"components/a.py": b"A = 1\n\xff\xfe not utf-8\n", "components/b.py": b"def b():\n    return 2\n"}
CHANGES = {
    "components/a.py": b"A = 10\n",
    "components/b.py": b"def b():\n    return 20\n",
    "components/sub/c.py": b"C = 3\n",
}
needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_files(root: Path, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)


def make_deployer(
    tmp_path: Path, use_git: bool = False, stores: tuple[VersionStore, AuditLog] | None = None
) -> Deployer:
    data = tmp_path / "data"
    versions, audit = stores or (SqliteVersionStore(data / "deploy.sqlite3"), SqliteAuditLog(data / "audit.sqlite3"))
    return Deployer(tmp_path / "ws", data, versions, audit, use_git=use_git)


@pytest.fixture(params=["sqlite", "postgresql"])
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[VersionStore, AuditLog]]:
    """The version store and audit log on each backend (PostgreSQL: a real server, a database per test)."""
    if request.param == "sqlite":
        data = tmp_path / "data"
        yield SqliteVersionStore(data / "deploy.sqlite3"), SqliteAuditLog(data / "audit.sqlite3")
        return
    server: PostgresServer = request.getfixturevalue("postgres")
    db = PostgresDatabase(server.new_database())
    try:
        yield PostgresVersionStore(db), PostgresAuditLog(db)
    finally:
        db.close()


def leftovers(workspace: Path) -> list[str]:
    return sorted(str(p.relative_to(workspace)) for p in workspace.rglob("*.deploy-tmp"))


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    workspace = tmp_path / "ws"
    write_files(workspace, ORIGINALS)
    return workspace


def test_deploy_writes_every_file_and_records_previous_bytes(
    tmp_path: Path, ws: Path, stores: tuple[VersionStore, AuditLog]
) -> None:
    deployer = make_deployer(tmp_path, stores=stores)
    deployment = deployer.deploy("shop", "pricing", CHANGES, actor="alice", reason="faster pricing")

    assert deployment.status == "deployed"
    assert deployment.paths == tuple(sorted(CHANGES))
    assert deployment.commit_sha is None
    for rel, data in CHANGES.items():
        assert (ws / rel).read_bytes() == data
    versions = {v.path: v for v in deployer.store.files(deployment.id)}
    assert versions["components/sub/c.py"].previous is None
    assert versions["components/sub/c.py"].previous_sha256 is None
    for rel, data in ORIGINALS.items():
        assert versions[rel].previous == data and versions[rel].previous_sha256 == sha(data)
    for rel, data in CHANGES.items():
        assert versions[rel].new == data and versions[rel].new_sha256 == sha(data)
    assert leftovers(ws) == [] and read_journals(deployer.journal_dir) == []
    listed, more = deployer.store.list(tenant="shop")
    assert [d.id for d in listed] == [deployment.id] and not more
    assert deployer.store.list(tenant="other") == ([], False)
    kinds = [e.kind for e in deployer.audit.query().entries]
    assert kinds == ["deployment", "deployment_proposed"]


def test_a_nul_in_what_an_agent_or_a_model_wrote_is_stored_not_an_error(
    tmp_path: Path, ws: Path, stores: tuple[VersionStore, AuditLog]
) -> None:
    """PostgreSQL's text cannot hold NUL: there it is stored as U+FFFD (SQLite keeps it) — never a failed write that
    would lose the deployment's record or its audit entry."""
    deployer = make_deployer(tmp_path, stores=stores)
    deployment = deployer.deploy("shop", "pricing", CHANGES, actor="ali\x00ce", reason="faster\x00pricing")
    kept = "\x00" if isinstance(stores[0], SqliteVersionStore) else "\ufffd"
    stored = deployer.store.get(deployment.id)
    assert stored is not None and stored.reason == f"faster{kept}pricing" and stored.actor == f"ali{kept}ce"
    entries = deployer.audit.query().entries
    assert [e.actor for e in entries] == [f"ali{kept}ce"] * 2
    assert deployer.rollback(deployment.id, actor="bob", reason="back\x00off").status == "rolled_back"


def test_rollback_restores_exact_bytes_and_removes_created_files(
    tmp_path: Path, ws: Path, stores: tuple[VersionStore, AuditLog]
) -> None:
    os.chmod(ws / "components/b.py", 0o755)
    deployer = make_deployer(tmp_path, stores=stores)
    deployment = deployer.deploy("shop", "pricing", CHANGES, actor="alice", reason="faster")
    assert os.stat(ws / "components/b.py").st_mode & 0o777 == 0o755

    rolled = deployer.rollback(deployment.id, actor="monitor", reason="p95 latency +25 %")

    assert rolled.status == "rolled_back" and rolled.rollback_reason == "p95 latency +25 %"
    for rel, data in ORIGINALS.items():
        assert (ws / rel).read_bytes() == data
    assert not (ws / "components/sub/c.py").exists()
    assert os.stat(ws / "components/b.py").st_mode & 0o777 == 0o755
    assert leftovers(ws) == [] and read_journals(deployer.journal_dir) == []
    entry = deployer.audit.query(kind="rollback").entries[0]
    assert entry.subject == deployment.id and entry.detail["reason"] == "p95 latency +25 %"
    with pytest.raises(InvalidStateError, match="only a deployed one"):
        deployer.rollback(deployment.id, actor="monitor", reason="again")


def test_rollback_refused_when_a_file_changed_since_the_deployment(
    tmp_path: Path, ws: Path, stores: tuple[VersionStore, AuditLog]
) -> None:
    deployer = make_deployer(tmp_path, stores=stores)
    deployment = deployer.deploy("shop", "pricing", CHANGES, actor="alice", reason="faster")
    (ws / "components/b.py").write_bytes(b"hand edit\n")

    with pytest.raises(WorkspaceChangedError, match="changed since it was deployed") as caught:
        deployer.rollback(deployment.id, actor="monitor", reason="slower")

    assert caught.value.paths == ["components/b.py"]
    assert (ws / "components/a.py").read_bytes() == CHANGES["components/a.py"]
    assert (ws / "components/b.py").read_bytes() == b"hand edit\n"
    assert deployer.store.get(deployment.id).status == "deployed"  # type: ignore[union-attr]
    assert deployer.audit.query(kind="rollback_refused").entries[0].detail["changed"] == ["components/b.py"]

    forced = deployer.rollback(deployment.id, actor="admin", reason="restore anyway", force=True)
    assert forced.status == "rolled_back"
    for rel, data in ORIGINALS.items():
        assert (ws / rel).read_bytes() == data
    assert deployer.audit.query(kind="rollback").entries[0].detail["forced"] is True


@pytest.mark.parametrize("path", ["../escape.py", "/etc/passwd", ".git/config", "a/../b.py", "a\\b.py", ""])
def test_unsafe_paths_are_refused_before_anything_is_written(
    tmp_path: Path, ws: Path, path: str, stores: tuple[VersionStore, AuditLog]
) -> None:
    deployer = make_deployer(tmp_path, stores=stores)
    with pytest.raises(UnsafePathError):
        deployer.deploy("shop", "x", {path: b"x"}, actor="a", reason="r")
    assert deployer.store.list() == ([], False)


def test_symlinked_folder_leading_outside_is_refused(
    tmp_path: Path, ws: Path, stores: tuple[VersionStore, AuditLog]
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (ws / "link").symlink_to(outside)
    with pytest.raises(UnsafePathError, match="outside the workspace"):
        make_deployer(tmp_path, stores=stores).deploy("shop", "x", {"link/evil.py": b"x"}, actor="a", reason="r")
    assert list(outside.iterdir()) == []


def test_pending_approval_is_applied_or_rejected(
    tmp_path: Path, ws: Path, stores: tuple[VersionStore, AuditLog]
) -> None:
    deployer = make_deployer(tmp_path, stores=stores)
    held = deployer.propose("system", "shared", CHANGES, actor="cycle", reason="r", hold_for_approval=True)
    assert held.status == "pending_approval"
    assert (ws / "components/a.py").read_bytes() == ORIGINALS["components/a.py"]
    assert deployer.apply(held.id, actor="approver").status == "deployed"
    assert (ws / "components/a.py").read_bytes() == CHANGES["components/a.py"]

    other = deployer.propose(
        "system", "shared", {"components/a.py": b"A = 99\n"}, actor="c", reason="r", hold_for_approval=True
    )
    (ws / "components/a.py").write_bytes(b"changed meanwhile\n")
    with pytest.raises(WorkspaceChangedError, match="generate it again"):
        deployer.apply(other.id, actor="approver")
    assert deployer.reject(other.id, actor="approver", reason="stale").status == "rejected"
    with pytest.raises(InvalidStateError):
        deployer.apply(other.id, actor="approver")


# --- git ---------------------------------------------------------------------------------------------------------


def git(ws: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=ws, check=True, capture_output=True, text=True, timeout=30).stdout


def init_repo(ws: Path) -> None:
    (ws / "unrelated.txt").write_bytes(b"one\n")
    (ws / "staged.txt").write_bytes(b"one\n")
    git(ws, "init", "-q")
    git(ws, "add", "-A")
    git(ws, "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false", "commit", "-qm", "init")


@needs_git
def test_git_deployment_is_one_commit_of_only_the_touched_files(tmp_path: Path, ws: Path) -> None:
    init_repo(ws)
    # Someone else's work in progress elsewhere in the tree must stay out of the deployment's commit.
    (ws / "unrelated.txt").write_bytes(b"uncommitted edit\n")
    (ws / "staged.txt").write_bytes(b"staged edit\n")
    git(ws, "add", "staged.txt")
    head = git(ws, "rev-parse", "HEAD").strip()
    deployer = make_deployer(tmp_path, use_git=True)
    assert deployer.git is not None

    deployment = deployer.deploy("shop", "pricing", CHANGES, actor="alice", reason="faster")

    assert git(ws, "rev-list", "--count", f"{head}..HEAD").strip() == "1"
    assert deployment.commit_sha == git(ws, "rev-parse", "HEAD").strip()
    touched = git(ws, "show", "--name-only", "--format=", "HEAD").split()
    assert sorted(touched) == sorted(CHANGES)
    assert f"[deployment {deployment.id}]" in git(ws, "log", "-1", "--format=%B")
    assert git(ws, "diff", "--cached", "--name-only").split() == ["staged.txt"]
    assert (ws / "unrelated.txt").read_bytes() == b"uncommitted edit\n"

    rolled = deployer.rollback(deployment.id, actor="monitor", reason="slower")
    assert rolled.rollback_commit_sha == git(ws, "rev-parse", "HEAD").strip()
    assert sorted(git(ws, "show", "--name-only", "--format=", "HEAD").split()) == sorted(CHANGES)
    assert git(ws, "ls-files", "components/sub/c.py") == ""
    assert git(ws, "diff", "--cached", "--name-only").split() == ["staged.txt"]
    assert git(ws, "status", "--porcelain", "--", "components").strip() == ""


@needs_git
def test_git_workspace_with_uncommitted_changes_to_touched_files_is_refused(tmp_path: Path, ws: Path) -> None:
    init_repo(ws)
    (ws / "components/a.py").write_bytes(b"work in progress\n")
    head = git(ws, "rev-parse", "HEAD").strip()
    deployer = make_deployer(tmp_path, use_git=True)

    with pytest.raises(DirtyWorkspaceError, match="uncommitted changes") as caught:
        deployer.deploy("shop", "pricing", CHANGES, actor="alice", reason="faster")

    assert caught.value.paths == ["components/a.py"]
    assert (ws / "components/a.py").read_bytes() == b"work in progress\n"
    assert not (ws / "components/sub/c.py").exists()
    assert git(ws, "rev-parse", "HEAD").strip() == head
    assert deployer.store.list() == ([], False)


@needs_git
def test_failed_commit_restores_the_files_and_marks_the_deployment_failed(tmp_path: Path, ws: Path) -> None:
    init_repo(ws)
    (ws / ".gitignore").write_bytes(b"components/sub/\n")
    git(ws, "add", ".gitignore")
    git(ws, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "ignore")
    deployer = make_deployer(tmp_path, use_git=True)

    with pytest.raises(DeployError, match="The files were restored"):
        deployer.deploy("shop", "pricing", CHANGES, actor="alice", reason="faster")

    for rel, data in ORIGINALS.items():
        assert (ws / rel).read_bytes() == data
    assert not (ws / "components/sub/c.py").exists()
    [failed], _ = deployer.store.list()
    assert failed.status == "failed" and failed.error is not None
    assert read_journals(deployer.journal_dir) == [] and leftovers(ws) == []


# --- crash safety --------------------------------------------------------------------------------------------------

OLD = {rel: f"# old {i}\n".encode() * 5000 for i, rel in enumerate(sorted(new_files())) if i != FILE_COUNT - 1}


@pytest.fixture(params=["sqlite", "postgresql"])
def crash_backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Where the crash tests' version store and audit log live: SQLite files, or a PostgreSQL database (a real
    server; the child process gets its URL from the environment)."""
    if request.param == "postgresql":
        server: PostgresServer = request.getfixturevalue("postgres")
        monkeypatch.setenv(URL_ENV, server.new_database())
    else:
        monkeypatch.delenv(URL_ENV, raising=False)
    try:
        yield request.param
    finally:
        close_databases()


def spawn(ws: Path, data: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.deploy_crash_child", str(ws), str(data), *args],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def kill_when_ready(proc: subprocess.Popen[str]) -> None:
    assert proc.stdout is not None
    assert proc.stdout.readline() == "STARTED\n"
    line = proc.stdout.readline()
    assert line == "READY\n", proc.stderr.read() if proc.stderr else line
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)


def state_of(ws: Path, old: dict[str, bytes], new: dict[str, bytes]) -> str:
    current = {rel: (ws / rel).read_bytes() if (ws / rel).exists() else None for rel in new}
    if all(current[rel] == new[rel] for rel in new):
        return "new"
    if all(current[rel] == old.get(rel) for rel in new):
        return "old"
    return f"MIX {current}"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("step", "index", "expected", "status"),
    [
        ("journaled", 1, "old", "failed"),
        ("temp_written", 1, "old", "failed"),
        ("temp_written", FILE_COUNT - 1, "old", "failed"),
        ("temp_written", FILE_COUNT, "new", "deployed"),
        ("replaced", 1, "new", "deployed"),
        ("replaced", FILE_COUNT - 1, "new", "deployed"),
        ("committed", 1, "new", "deployed"),
    ],
)
def test_sigkill_mid_deploy_recovers_to_all_old_or_all_new(
    tmp_path: Path, step: str, index: int, expected: str, status: str, crash_backend: str
) -> None:
    ws, data = tmp_path / "ws", tmp_path / "data"
    write_files(ws, OLD)
    proc = spawn(ws, data, "deploy", step, str(index), "0")
    kill_when_ready(proc)
    assert len(read_journals(data / "deploy-journal")) == 1
    if step == "replaced":
        assert state_of(ws, OLD, new_files()).startswith("MIX")  # the kill really landed mid-way

    deployer = open_deployer(ws, data)
    [recovered] = deployer.recover()

    assert state_of(ws, OLD, new_files()) == expected
    assert recovered.status == status
    assert deployer.store.get(recovered.deployment_id).status == status  # type: ignore[union-attr]
    assert leftovers(ws) == [] and read_journals(deployer.journal_dir) == []
    assert deployer.recover() == []


@pytest.mark.slow
def test_truncated_temp_file_is_rolled_back_not_forward(tmp_path: Path) -> None:
    ws, data = tmp_path / "ws", tmp_path / "data"
    write_files(ws, OLD)
    kill_when_ready(spawn(ws, data, "deploy", "temp_written", str(FILE_COUNT), "0"))
    [temp] = [p for p in ws.rglob("*.deploy-tmp") if p.name.startswith(".m2.py")]
    temp.write_bytes(temp.read_bytes()[:100])  # as if the crash had cut the write short

    [recovered] = open_deployer(ws, data).recover()

    assert recovered.outcome == "back" and recovered.status == "failed"
    assert state_of(ws, OLD, new_files()) == "old"


@pytest.mark.slow
def test_sigkill_mid_rollback_recovers_to_the_previous_bytes(tmp_path: Path, crash_backend: str) -> None:
    ws, data = tmp_path / "ws", tmp_path / "data"
    write_files(ws, OLD)
    deployment = open_deployer(ws, data).deploy("default", "crashy", new_files(), actor="t", reason="r")
    kill_when_ready(spawn(ws, data, "rollback", "replaced", "2", "0", deployment.id))
    assert state_of(ws, OLD, new_files()).startswith("MIX")

    [recovered] = open_deployer(ws, data).recover()

    assert recovered.status == "rolled_back"
    assert state_of(ws, OLD, new_files()) == "old"


@pytest.mark.slow
def test_sigkill_at_random_moments_never_leaves_a_mix(tmp_path: Path, crash_backend: str) -> None:
    rng = random.Random(5)
    outcomes = set()
    for run in range(8):
        ws, data = tmp_path / f"ws{run}", tmp_path / f"data{run}"
        write_files(ws, OLD)
        # 14 steps of 20 ms each: a kill 0-300 ms after the start lands anywhere in the transaction.
        proc = spawn(ws, data, "deploy", "never", "1", "0.02")
        assert proc.stdout is not None and proc.stdout.readline() == "STARTED\n"
        try:
            proc.communicate(timeout=rng.uniform(0.0, 0.3))
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.communicate(timeout=30)
        open_deployer(ws, data).recover()
        outcome = state_of(ws, OLD, new_files())
        assert outcome in ("old", "new"), f"run {run}: {outcome}"
        outcomes.add(outcome)
        assert leftovers(ws) == []


# --- audit log -----------------------------------------------------------------------------------------------------


# (the audit log's own tests run on every backend: tests/test_audit_log.py)


@pytest.mark.slow
@pytest.mark.anyio
@pytest.mark.parametrize(
    ("step", "expected", "status"), [("temp_written", "old", "failed"), ("replaced", "new", "deployed")]
)
async def test_real_server_started_after_a_sigkill_mid_deploy_finds_the_workspace_consistent(
    tmp_path: Path, step: str, expected: str, status: str
) -> None:
    """A process is SIGKILLed in the middle of a deploy (files half replaced); the real server, started as a
    subprocess on the same workspace and data, recovers at start-up before it serves, and its tools report it."""
    ws, data = tmp_path / "ws", tmp_path / "data"
    write_files(ws, OLD)
    kill_when_ready(spawn(ws, data, "deploy", step, "2", "0"))
    if step == "replaced":
        assert state_of(ws, OLD, new_files()).startswith("MIX")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SELF_BUILDING_")}
    env.update(SELF_BUILDING_DATA_DIR=str(data), SELF_BUILDING_WORKSPACE=str(ws))
    params = StdioServerParameters(command=sys.executable, args=["-m", "server", "serve"], env=env, cwd=str(ROOT))
    with (tmp_path / "stderr.log").open("w", encoding="utf-8") as errlog:
        async with Client(stdio_client(params, errlog=errlog)) as client:
            listed = (await client.call_tool("list_deployments", {})).structured_content
            assert listed is not None
            [deployment] = listed["deployments"]
            detail = await client.call_tool("get_deployment", {"deployment_id": deployment["deployment_id"]})
            recovery = (await client.call_tool("query_audit_log", {"kind": "recovery"})).structured_content
    assert state_of(ws, OLD, new_files()) == expected
    assert deployment["status"] == status
    files = detail.structured_content["files"]  # type: ignore[index]
    side = "new_sha256" if expected == "new" else "previous_sha256"
    assert all(f["current_sha256"] == f[side] for f in files), files
    assert recovery is not None and recovery["entries"][0]["subject"] == deployment["deployment_id"]
    assert leftovers(ws) == [] and read_journals(data / "deploy-journal") == []
    assert "start-up recovery of deployment" in (tmp_path / "stderr.log").read_text(encoding="utf-8")
