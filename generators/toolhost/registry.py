"""The generated tools a server serves, kept in step with the workspace.

A tool is born of a deployment of a component of type ``tool`` (``generate_component``, or an approval of a held
one). :meth:`GeneratedTools.sync` — run at start-up and after every change of a deployment — finds such deployments,
and for each known tool compares the code in the workspace with the code it serves: new or changed code (a new
version, or a rollback to an earlier one) is copied into a snapshot folder, loaded by a new worker in the jail and
served as the next version; code that is gone (the deployment that created it was rolled back) removes the tool.
Each registration and removal is audited; ``on_change`` hears that the tool set changed.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import anyio

from generators.clock import Clock
from generators.codegen.tool_rules import TOOL_TYPE
from generators.deploy import AuditLog, VersionStore
from generators.errors import GeneratedToolError, ToolWorkerError
from generators.toolhost.process import ToolSpec, ToolWorker, WorkerLimits
from generators.toolhost.store import SqliteToolStore, ToolRecord, ToolStatus
from generators.validation.jail import Jail

logger = logging.getLogger(__name__)
DISCOVER_RECENT = 50  # deployed deployments looked at for new tools on each sync
SHARED = ("shared", "common")  # component folders every tool may import


@dataclass(frozen=True, slots=True)
class LiveTool:
    """A tool served now: its record and what it says of itself."""

    record: ToolRecord
    spec: ToolSpec


class GeneratedTools:
    """One per server, owned by the lifespan. Thread-safe."""

    def __init__(
        self,
        store: SqliteToolStore,
        *,
        workspace: Path,
        versions: VersionStore,
        audit: AuditLog,
        jail: Jail,
        folder: Path,
        clock: Clock,
        limits: WorkerLimits | None = None,
        max_waiting: int = 8,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self.store, self.workspace, self.versions, self.audit = store, workspace, versions, audit
        self.jail, self.folder, self.clock = jail, folder, clock
        self.limits = limits or WorkerLimits()
        self.max_waiting = max_waiting
        self.on_change = on_change
        self._lock = threading.Lock()
        self._records = {(r.tenant, r.name): r for r in store.all()}
        self._live: dict[tuple[str, str], tuple[ToolWorker, ToolSpec]] = {}
        self._waiting: dict[tuple[str, str], int] = {}

    # -- what is served

    def live(self) -> list[LiveTool]:
        """Every tool served now, by tenant and name."""
        with self._lock:
            return [LiveTool(self._records[key], spec) for key, (_, spec) in sorted(self._live.items())]

    def records(self) -> list[ToolRecord]:
        """Every tool ever registered (removed and broken ones too), by tenant and name."""
        with self._lock:
            return [self._records[key] for key in sorted(self._records)]

    async def call(self, tenant: str, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        """Call the tool in its worker (in a thread); at most ``max_waiting`` calls of one tool wait at once.

        Raises:
            GeneratedToolError: see :meth:`ToolWorker.call`; also when the tool is not served (any more).
        """
        key = (tenant, name)
        with self._lock:
            found = self._live.get(key)
            if found is None:
                raise GeneratedToolError(f"tool {name} of tenant {tenant} is not served (removed meanwhile?)")
            if self._waiting.get(key, 0) >= self.max_waiting:
                raise ToolWorkerError(f"tool {name} has {self.max_waiting} calls waiting already; try again later")
            self._waiting[key] = self._waiting.get(key, 0) + 1
        worker = found[0]
        failed = True
        try:
            result = await anyio.to_thread.run_sync(worker.call, arguments, abandon_on_cancel=False)
            failed = False
            return result
        finally:
            with self._lock:
                self._waiting[key] -= 1
                record = self._records[key]
                record.calls += 1
                record.failures += int(failed)

    # -- keeping in step with the workspace

    async def sync(self) -> bool:
        """:meth:`sync_now` in a worker thread."""
        return await anyio.to_thread.run_sync(self.sync_now)

    def sync_now(self) -> bool:
        """Register new tools, load changed code, remove tools whose code is gone; True when the tool set changed
        (``on_change`` is told). Blocking."""
        with self._lock:
            self._discover()
            changed = [self._reconcile(record) for record in list(self._records.values())]
        if any(changed) and self.on_change is not None:
            self.on_change()
        return any(changed)

    def close(self) -> None:
        """Stop every worker and keep the counters."""
        with self._lock:
            for worker, _ in self._live.values():
                worker.close()
            self._live.clear()
            for record in self._records.values():
                self.store.save(record)

    def _discover(self) -> None:
        deployed, _ = self.versions.list(status="deployed", limit=DISCOVER_RECENT)
        for d in deployed:
            module = d.detail.get("module")
            if d.detail.get("component_type") != TOOL_TYPE or not isinstance(module, str):
                continue
            if (d.tenant, d.component) not in self._records:
                now = self.clock()
                record = ToolRecord(d.tenant, d.component, module, "removed", 0, "", d.id, now, now)
                self._records[(d.tenant, d.component)] = record

    def _reconcile(self, record: ToolRecord) -> bool:
        key = (record.tenant, record.name)
        path = self.workspace / record.module
        code = path.read_bytes() if path.is_file() else None
        if code is None:
            if record.status == "removed":
                return False
            self._stop(key)
            self._set(record, "removed", None)
            self._audit("generated_tool_removed", record, {"version": record.version})
            return True
        sha = hashlib.sha256(code).hexdigest()
        same = sha == record.sha256
        if same and (key in self._live or record.status == "broken"):
            return False
        self._stop(key)
        if not same:  # new code (a new version, or a rollback to an earlier one); else a restart serves it again
            record.version, record.sha256 = record.version + 1, sha
        was = record.status
        try:
            self._live[key] = self._load(record)
        except GeneratedToolError as exc:
            self._set(record, "broken", str(exc))
            self._audit("generated_tool_broken", record, {"version": record.version, "error": str(exc)[:500]})
            return True
        self._set(record, "active", None)
        if not same or was != "active":
            self._audit("generated_tool_registered", record, {"version": record.version, "sha256": sha})
        return True

    def _load(self, record: ToolRecord) -> tuple[ToolWorker, ToolSpec]:
        """A read-only snapshot of the tool's code (its module, its packages' ``__init__`` files, its tenant's
        folder and the shared ones), and a worker on it."""
        root = self.folder / record.tenant / record.name / f"v{record.version}"
        if root.exists():
            shutil.rmtree(root)
        module = PurePosixPath(record.module)
        for folder in [module.parent, *(module.parent / shared for shared in SHARED)]:
            source = self.workspace / folder
            if source.is_dir():
                shutil.copytree(source, root / folder, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
        for parent in [*module.parents][:-1]:  # the package's __init__ files up to the top folder
            init = self.workspace / parent / "__init__.py"
            if init.is_file():
                (root / parent).mkdir(parents=True, exist_ok=True)
                shutil.copy2(init, root / parent / "__init__.py")
        (root / module.parent).mkdir(parents=True, exist_ok=True)
        shutil.copy2(self.workspace / module, root / module)
        root.chmod(0o755)  # the jail's user reads it (the folders above it are not in the jail)
        for path in root.rglob("*"):
            path.chmod(0o755 if path.is_dir() else 0o644)
        dotted = ".".join(module.with_suffix("").parts)
        worker = ToolWorker(self.jail, root, dotted, record.name, self.limits)
        try:
            return worker, worker.describe()
        except BaseException:
            worker.close()
            raise

    def _stop(self, key: tuple[str, str]) -> None:
        found = self._live.pop(key, None)
        if found is not None:
            found[0].close()

    def _set(self, record: ToolRecord, status: ToolStatus, error: str | None) -> None:
        record.status, record.error, record.updated_at = status, error, self.clock()
        self.store.save(record)

    def _audit(self, kind: str, record: ToolRecord, detail: dict[str, Any]) -> None:
        subject = f"{record.tenant}/{record.name}"
        detail = {"module": record.module, "deployment_id": record.deployment_id, **detail}
        self.audit.append(kind, subject, actor="generated-tools", tenant=record.tenant, detail=detail)
