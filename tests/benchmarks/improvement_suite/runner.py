"""Run the improvement loop on one task, through the MCP client, and judge the result with the hidden check.

Each task gets a fresh data folder and a fresh copy of its workspace; the server is built with ``create_server`` and
driven in memory by ``mcp.Client``: the task's telemetry is pushed with ``ingest_telemetry``, one
``trigger_improvement_cycle`` is started and followed with ``get_improvement_cycle`` until it has ended and its
candidate is judged; then the hidden check runs on the final workspace in a fresh interpreter.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
from mcp import Client
from pydantic import SecretStr

from generators.validation import StageName
from server.app import create_server
from server.settings import Settings
from tests.benchmarks.improvement_suite.catalog import Task
from tests.fakes import FakeHostSource, NoGpu

logger = logging.getLogger(__name__)
# A candidate in one of these is still at work; anything else is where it ended.
UNFINISHED = frozenset({"queued", "generating", "deploying", "monitoring"})
OUTCOMES = {
    "kept": "kept",
    "rolled_back": "rolled back",
    "regressed": "regressed",  # worse, but deployed (automatic rollback off)
    "pending_approval": "held",
    "validation_failed": "rejected",
    "rejected": "rejected",
    "deploy_failed": "rejected",
    "error": "error",
    "interrupted": "error",
    "skipped": "skipped",
    "dry_run": "dry run",
}
# "no change passed validation in every round" says no round passed, not that the reply changed nothing.
_NO_CHANGE = re.compile(r"\bno change\b(?! passed)", re.IGNORECASE)
HIDDEN_OUTPUT_CHARS = 2_000
IGNORED_PARTS = frozenset({"__pycache__", ".pytest_cache", ".mypy_cache", ".coverage", ".git"})


@dataclass(frozen=True, slots=True)
class Endpoint:
    """An OpenAI-compatible endpoint; ``None`` fields come from the ``SELF_BUILDING_LLM_*`` variables."""

    base_url: str | None = None
    model: str | None = None
    api_key: str | None = None


@dataclass(frozen=True, slots=True)
class SuiteOptions:
    """How each task's server is set up and how long a task may take."""

    stages: tuple[StageName, ...] | None = None  # validation stages; None: all (the server's default)
    benchmark_runs: int | None = None  # None: the settings' default
    benchmark_max_runs: int | None = None
    monitoring_seconds: float = 1.0
    max_rounds: int | None = None
    risk_tolerance: str = "medium"  # the tool's default: the loop as it runs unless told otherwise
    task_timeout: float = 1800.0  # the cycle, until its candidate is judged
    hidden_timeout: float = 120.0
    settings: dict[str, Any] = field(default_factory=dict)  # any other Settings fields

    def server_settings(self, root: Path, workspace: Path, endpoint: Endpoint) -> Settings:
        """The settings of a task's server: its own data folder and workspace, the endpoint, these options (the
        environment's ``SELF_BUILDING_*`` variables fill in the rest)."""
        values: dict[str, Any] = {
            "data_dir": root / "data",
            "workspace": workspace,
            "improvement_monitoring_seconds": self.monitoring_seconds,
            "improvement_wait_seconds": self.task_timeout,
            "improvement_max_concurrency": 1,
            "self_analysis_interval_hours": 0,  # only the task's telemetry may point the loop anywhere
            "enable_autonomous_improvements": False,
        }
        optional = {
            "llm_base_url": endpoint.base_url,
            "llm_model": endpoint.model,
            "llm_api_key": SecretStr(endpoint.api_key) if endpoint.api_key else None,
            "improvement_benchmark_runs": self.benchmark_runs,
            "improvement_benchmark_max_runs": self.benchmark_max_runs,
            "generation_max_rounds": self.max_rounds,
        }
        values |= {k: v for k, v in optional.items() if v is not None}
        return Settings(**(values | self.settings))


@dataclass(slots=True)
class TaskResult:
    """What the loop did with one task, and whether the final workspace passes the hidden check."""

    task: str
    defect: str
    outcome: str  # kept, rolled back, rejected, no change, held, error, ... (see OUTCOMES)
    hidden_passed: bool
    rounds: int
    prompt_tokens: int
    completion_tokens: int
    seconds: float
    status: str = ""  # the candidate's status as get_improvement_cycle gives it
    cycle_status: str = ""
    message: str = ""
    reasons: list[str] = field(default_factory=list)
    changed_files: list[str] = field(default_factory=list)  # final workspace against the task's
    deployments: list[dict[str, Any]] = field(default_factory=list)
    generations: list[dict[str, Any]] = field(default_factory=list)  # generation_result audit entries
    figures: dict[str, Any] = field(default_factory=dict)
    hidden_output: str = ""
    candidate: dict[str, Any] = field(default_factory=dict)  # as get_improvement_cycle gives it
    left_out: list[dict[str, Any]] = field(default_factory=list)  # opportunities the cycle did not act on

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def solved(self) -> bool:
        return self.outcome == "kept" and self.hidden_passed

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"tokens": self.tokens, "solved": self.solved}

    def describe(self) -> str:
        """A few lines for a failed assertion or a log."""
        return (
            f"{self.task}: {self.outcome} (candidate {self.status or '-'}, cycle {self.cycle_status or '-'}): "
            f"{self.message}\nreasons: {self.reasons}\nchanged: {self.changed_files}\n"
            f"deployments: {self.deployments}\nrounds: {[g.get('outcomes') for g in self.generations]}\n"
            f"hidden check: {'pass' if self.hidden_passed else 'fail'}: {self.hidden_output[-600:]}"
        )


def outcome_of(candidate: dict[str, Any] | None, generations: list[dict[str, Any]]) -> str:
    """The suite's word for where a candidate ended: from its status, and its message or rounds for "no change"."""
    if candidate is None:
        return "no candidate"
    status = str(candidate["status"])
    outcomes = [str(o) for g in generations for o in g.get("outcomes", [])]
    said = " ".join([str(candidate.get("message", "")), *map(str, candidate.get("reasons", []))])
    if status not in ("kept", "rolled_back") and (
        _NO_CHANGE.search(said) or (outcomes and all(o == "no_change" for o in outcomes))
    ):
        return "no change"
    if status in UNFINISHED:
        return "error"
    return OUTCOMES.get(status, status)


async def _call(client: Client, tool: str, args: dict[str, Any]) -> dict[str, Any]:
    result = await client.call_tool(tool, args)
    if result.is_error or result.structured_content is None:
        text = " ".join(getattr(block, "text", "") for block in result.content)
        raise RuntimeError(f"{tool} failed: {text}")
    return dict(result.structured_content)


def _judged(cycle: dict[str, Any]) -> bool:
    return cycle["status"] != "running" and all(c["status"] not in UNFINISHED for c in cycle["candidates"])


async def _drive(client: Client, task: Task, options: SuiteOptions) -> tuple[dict[str, Any], float]:
    """Push the telemetry, run one cycle, and return it once its candidate is judged (or as it stands at the
    deadline), with the seconds from its start."""
    pushed = await _call(client, "ingest_telemetry", {"tenant_id": "default", **task.telemetry_arguments(time.time())})
    logger.info("%s: telemetry stored: %s", task.name, pushed["accepted"])

    async def progress(progress: float, total: float | None, message: str | None) -> None:
        logger.info("%s: %s", task.name, message)

    cycle: dict[str, Any] = {}
    started = time.perf_counter()
    with anyio.move_on_after(options.task_timeout):
        result = await client.call_tool(
            "trigger_improvement_cycle",
            {"max_improvements": 1, "risk_tolerance": options.risk_tolerance},
            progress_callback=progress,
        )
        if result.is_error or result.structured_content is None:
            raise RuntimeError(f"trigger_improvement_cycle failed: {result.content}")
        cycle = result.structured_content
        while not _judged(cycle):
            await anyio.sleep(0.2)
            cycle = await _call(client, "get_improvement_cycle", {"cycle_id": cycle["cycle_id"]})
    if not cycle:
        raise RuntimeError(f"trigger_improvement_cycle did not answer within {options.task_timeout:g} s")
    if not _judged(cycle):
        logger.warning("%s: the cycle was not judged within %g s", task.name, options.task_timeout)
    return cycle, time.perf_counter() - started


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (caches left out), by relative path."""
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in folder.rglob("*")
        if p.is_file() and not IGNORED_PARTS.intersection(p.relative_to(folder).parts)
    }


def changed_files(original: Path, final: Path) -> list[str]:
    """Paths that differ between the task's workspace and the final one (added, changed or removed)."""
    before, after = snapshot(original), snapshot(final)
    return sorted(p for p in before.keys() | after.keys() if before.get(p) != after.get(p))


def run_hidden_check(task: Task, workspace: Path, timeout: float) -> tuple[bool, str]:
    """Run the task's hidden check on ``workspace`` in a fresh, isolated interpreter: (passed, its output)."""
    env = {name: os.environ[name] for name in ("PATH", "LANG", "TZ") if name in os.environ}
    try:
        done = subprocess.run(
            [sys.executable, "-I", "-B", str(task.hidden_check), str(workspace)],
            cwd=workspace,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return False, f"the hidden check did not finish within {timeout:g} s"
    output = (done.stdout + done.stderr).strip()
    return done.returncode == 0, output[-HIDDEN_OUTPUT_CHARS:]


async def run_task(task: Task, endpoint: Endpoint, options: SuiteOptions) -> TaskResult:
    """Run the loop on ``task`` against ``endpoint`` and judge the final workspace."""
    with tempfile.TemporaryDirectory(prefix=f"improvement-suite-{task.name}-") as tmp:
        root = Path(tmp)
        workspace = root / "workspace"
        await anyio.to_thread.run_sync(shutil.copytree, task.workspace, workspace)
        settings = options.server_settings(root, workspace, endpoint)
        if not settings.llm_model:
            raise ValueError("no model: give --model (or SELF_BUILDING_LLM_MODEL), or use --scripted")
        server = create_server(
            settings, host_source=FakeHostSource(), gpu_source=NoGpu(), validation_stages=options.stages
        )
        async with Client(server) as client:
            cycle, seconds = await _drive(client, task, options)
            audit = await _call(client, "query_audit_log", {"kind": "generation_result", "limit": 100})
            listed = await _call(client, "list_deployments", {})
        generations = [e["detail"] for e in reversed(audit["entries"])]
        candidate = next((c for c in cycle["candidates"] if c["component"] == task.component), None)
        hidden_passed, hidden_output = await anyio.to_thread.run_sync(
            run_hidden_check, task, workspace, options.hidden_timeout
        )
        changed = await anyio.to_thread.run_sync(changed_files, task.workspace, workspace)
    return TaskResult(
        task=task.name,
        defect=task.defect,
        outcome=outcome_of(candidate, generations),
        hidden_passed=hidden_passed,
        rounds=sum(_rounds(g) for g in generations),
        prompt_tokens=int(candidate["prompt_tokens"]) if candidate else 0,
        completion_tokens=int(candidate["completion_tokens"]) if candidate else 0,
        seconds=round(seconds, 2),
        status=str(candidate["status"]) if candidate else "",
        cycle_status=str(cycle["status"]),
        message=str(candidate["message"]) if candidate else str(cycle.get("message", "")),
        reasons=list(candidate["reasons"]) if candidate else [],
        changed_files=changed,
        deployments=[
            {"id": d["deployment_id"], "status": d["status"], "paths": d["paths"]} for d in listed["deployments"]
        ],
        generations=generations,
        figures=dict(candidate["figures"]) if candidate else {},
        hidden_output=hidden_output,
        candidate=candidate or {},
        left_out=list(cycle.get("left_out", [])),
    )


def _rounds(generation: dict[str, Any]) -> int:
    rounds = generation.get("rounds") or 0  # None: the model could not be asked (an error before any round ended)
    return len(rounds) if isinstance(rounds, list) else int(rounds)
