"""The generated tools a server serves, kept in step with the workspace.

A tool is born of a deployment of a component of type ``tool`` (``generate_component``, or an approval of a held
one); an improvement cycle's change of its module is deployed as such too. :meth:`GeneratedTools.sync` — run at
start-up and after every change of a deployment — finds such deployments, and for each known tool compares the code
in the workspace with the code it serves: new or changed code (a new version, or a rollback to an earlier one) is
copied into a snapshot folder, loaded by a new worker in the jail and served under its version number (new code the
next number, earlier code its own number again); code that is gone (the deployment that created it was rolled back)
removes the tool. Each registration and removal is audited; ``on_change`` hears whose tool set changed.
"""

from __future__ import annotations

import ast
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
from generators.toolhost.store import ToolRecord, ToolStatus, ToolStore
from generators.validation.jail import Jail

logger = logging.getLogger(__name__)
COUNTERS_EVERY = 5.0  # seconds between saves of the call counters (also saved by each sync and at shutdown)
DISCOVER_RECENT = 50  # deployed deployments looked at for new tools on each sync
SHARED = ("shared", "common")  # component folders every tool may import


@dataclass(frozen=True, slots=True)
class LiveTool:
    """A tool served now: its record and what it says of itself."""

    record: ToolRecord
    spec: ToolSpec


class GeneratedTools:
    """One per server, owned by the lifespan. Thread-safe: ``_lock`` guards the maps and is held only briefly (also
    on the event loop); ``_syncing`` serialises :meth:`sync_now`, which copies code and starts workers outside it."""

    def __init__(
        self,
        store: ToolStore,
        *,
        workspace: Path,
        versions: VersionStore,
        audit: AuditLog,
        jail: Jail,
        folder: Path,
        clock: Clock,
        limits: WorkerLimits | None = None,
        max_waiting: int = 8,
        on_change: Callable[[frozenset[str]], None] | None = None,
    ) -> None:
        self.store, self.workspace, self.versions, self.audit = store, workspace, versions, audit
        self.jail, self.folder, self.clock = jail, folder, clock
        self.limits = limits or WorkerLimits()
        self.max_waiting = max_waiting
        self.on_change = on_change
        self._lock = threading.Lock()
        self._syncing = threading.Lock()
        self._records = {(r.tenant, r.name): r for r in store.all()}
        self._live: dict[tuple[str, str], tuple[ToolWorker, ToolSpec]] = {}
        self._waiting: dict[tuple[str, str], int] = {}
        self._turns: dict[tuple[str, str], anyio.Lock] = {}  # one call of a tool in its worker at a time
        self._retry_broken = True  # the first sync (start-up) tries broken tools again
        self._counted_at = clock()  # when the call counters were last saved
        self._saver = threading.Thread()  # the thread that saves them (none yet: one never started)

    # -- what is served

    def live(self) -> list[LiveTool]:
        """Every tool served now, by tenant and name."""
        with self._lock:
            return [LiveTool(self._records[key], spec) for key, (_, spec) in sorted(self._live.items())]

    def records(self) -> list[ToolRecord]:
        """Every tool ever registered (removed and broken ones too), by tenant and name."""
        with self._lock:
            return [self._records[key] for key in sorted(self._records)]

    def component_type_of(self, tenant: str, module: str) -> str | None:
        """``"tool"`` when ``module`` (a workspace path) is the code of one of ``tenant``'s tools not removed (served
        or broken): a change of it must keep the rules of a tool. Else ``None``."""
        with self._lock:
            found = any(
                r.tenant == tenant and r.module == module and r.status != "removed" for r in self._records.values()
            )
        return TOOL_TYPE if found else None

    async def call(self, tenant: str, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        """Call the tool in its worker: calls of one tool wait their turn on the event loop (at most
        ``max_waiting``), so a waiting call holds no worker thread.

        Raises:
            GeneratedToolError: see :meth:`ToolWorker.call`; also when the tool is not served (any more).
        """
        key = (tenant, name)
        with self._lock:
            if key not in self._live:
                raise GeneratedToolError(f"tool {name} of tenant {tenant} is not served (removed meanwhile?)")
            if self._waiting.get(key, 0) >= self.max_waiting:
                raise ToolWorkerError(f"tool {name} has {self.max_waiting} calls waiting already; try again later")
            self._waiting[key] = self._waiting.get(key, 0) + 1
            turn = self._turns.setdefault(key, anyio.Lock())
        failed = True
        try:
            async with turn:
                with self._lock:
                    found = self._live.get(key)  # the worker serving it now (a sync may have replaced it)
                if found is None:
                    raise GeneratedToolError(f"tool {name} of tenant {tenant} was removed meanwhile")
                result = await anyio.to_thread.run_sync(found[0].call, arguments, abandon_on_cancel=False)
            failed = False
            return result
        finally:
            with self._lock:
                self._waiting[key] -= 1
                record = self._records[key]
                record.calls += 1
                record.failures += int(failed)
                if self.clock() >= self._counted_at + COUNTERS_EVERY and not self._saver.is_alive():
                    # A crash loses at most COUNTERS_EVERY seconds of counts (a normal stop none). Saved in a
                    # thread of its own: not in the time of this call, nor on the event loop.
                    self._counted_at = self.clock()
                    self._saver = threading.Thread(target=self._save_counts, name="tool-counters", daemon=True)
                    self._saver.start()

    def _save_counts(self) -> None:
        with self._lock:
            counts = [(r.tenant, r.name, r.calls, r.failures) for r in self._records.values()]
        try:
            self.store.save_counts(counts)
        except Exception:  # the disk full, the store closed: the next save (or the shutdown's) writes them
            logger.warning("the call counts of generated tools could not be saved now", exc_info=True)

    # -- keeping in step with the workspace

    async def sync(self) -> bool:
        """:meth:`sync_now` in a worker thread."""
        return await anyio.to_thread.run_sync(self.sync_now)

    def sync_now(self) -> bool:
        """Register new tools, load changed code, remove tools whose code is gone; True when the tool set changed
        (``on_change`` is told). Blocking."""
        with self._syncing:
            retry, self._retry_broken = self._retry_broken, False
            with self._lock:
                self._discover()
                records = list(self._records.values())
            changed = [self._reconcile(record, retry) for record in records]
            with self._lock:
                for record in records:
                    self.store.save(record)  # the counters too
        tenants = frozenset(record.tenant for record, moved in zip(records, changed, strict=True) if moved)
        if tenants and self.on_change is not None:
            self.on_change(tenants)
        return any(changed)

    def close(self) -> None:
        """Stop every worker and keep the counters (blocking: call it from a worker thread)."""
        if self._saver.is_alive():
            self._saver.join()
        with self._syncing, self._lock:
            live, self._live = list(self._live.values()), {}
            for record in self._records.values():
                self.store.save(record)
        for worker, _ in live:
            worker.close()

    def _discover(self) -> None:
        deployed, _ = self.versions.list(status="deployed", limit=DISCOVER_RECENT)
        for d in reversed(deployed):  # oldest first: the newest deployment of a tool is the one it is from
            module = d.detail.get("module")
            if d.detail.get("component_type") != TOOL_TYPE or not isinstance(module, str):
                continue
            found = self._records.get((d.tenant, d.component))
            if found is None:
                now = self.clock()
                self._records[(d.tenant, d.component)] = ToolRecord(
                    d.tenant, d.component, module, "removed", 0, "", d.id, now, now
                )
            else:
                found.module, found.deployment_id = module, d.id

    def _reconcile(self, record: ToolRecord, retry_broken: bool) -> bool:
        key = (record.tenant, record.name)
        path = self.workspace / record.module
        code = path.read_bytes() if path.is_file() and not path.is_symlink() else None
        if code is None:
            if record.status == "removed":
                return False
            self._swap(key, None)
            self._set(record, "removed", None)
            self._audit("generated_tool_removed", record, {"version": record.version})
            return True
        sha = code_digest(self.workspace, record.module, code)
        same = sha == record.sha256
        with self._lock:
            served = key in self._live
        if same and (served or (record.status == "broken" and not retry_broken)):
            return False
        if not same:  # new code, or earlier code again (a rollback); else a restart serves it again
            record.version = self.store.version_of(record.tenant, record.name, sha, record.version)
            record.sha256 = sha
        was = record.status
        try:
            loaded = self._load(record)
        except (GeneratedToolError, OSError) as exc:
            self._swap(key, None)
            self._set(record, "broken", str(exc))
            self._audit("generated_tool_broken", record, {"version": record.version, "error": str(exc)[:500]})
            return True
        self._swap(key, loaded)
        self._set(record, "active", None)
        if not same or was != "active":
            self._audit("generated_tool_registered", record, {"version": record.version, "sha256": sha})
        return True

    def _swap(self, key: tuple[str, str], loaded: tuple[ToolWorker, ToolSpec] | None) -> None:
        """Serve ``loaded`` (None: nothing) for ``key``; the worker it replaces is closed (calls waiting for it are
        refused)."""
        with self._lock:
            old = self._live.pop(key, None)
            if loaded is not None:
                self._live[key] = loaded
        if old is not None:
            old[0].close()

    def _load(self, record: ToolRecord) -> tuple[ToolWorker, ToolSpec]:
        """A read-only snapshot of the tool's code (its module, the packages' ``__init__`` files above it, the folder
        it is in and the shared component folders), and a worker on it. Older snapshots are removed."""
        status = self.jail.status()
        if not status.ready:
            raise GeneratedToolError(f"generated code is not run: {status.detail}")
        home = self.folder / record.tenant / record.name
        root = home / f"v{record.version}"
        if home.exists():
            shutil.rmtree(home)
        module = PurePosixPath(record.module)
        top = PurePosixPath(module.parts[0])  # components/
        for folder in [module.parent, *(top / shared for shared in SHARED)]:
            source = self.workspace / folder
            if source.is_dir():
                ignore = shutil.ignore_patterns("__pycache__")
                shutil.copytree(source, root / folder, dirs_exist_ok=True, ignore=ignore, symlinks=True)
        for parent in [*module.parents][:-1]:  # the package's __init__ files up to the top folder
            init = self.workspace / parent / "__init__.py"
            if init.is_file():
                (root / parent).mkdir(parents=True, exist_ok=True)
                shutil.copy2(init, root / parent / "__init__.py")
        (root / module.parent).mkdir(parents=True, exist_ok=True)
        shutil.copy2(self.workspace / module, root / module)
        root.chmod(0o755)  # the jail's user reads it (the folders above it are not in the jail)
        for path in root.rglob("*"):
            if not path.is_symlink():
                path.chmod(0o755 if path.is_dir() else 0o644)
        dotted = ".".join(module.with_suffix("").parts)
        worker = ToolWorker(self.jail, root, dotted, record.name, self.limits)
        try:
            return worker, worker.describe()
        except BaseException:
            worker.close()
            raise

    def _set(self, record: ToolRecord, status: ToolStatus, error: str | None) -> None:
        with self._lock:
            record.status, record.error, record.updated_at = status, error, self.clock()
            self.store.save(record)

    def _audit(self, kind: str, record: ToolRecord, detail: dict[str, Any]) -> None:
        subject = f"{record.tenant}/{record.name}"
        detail = {"module": record.module, "deployment_id": record.deployment_id, **detail}
        self.audit.append(kind, subject, actor="generated-tools", tenant=record.tenant, detail=detail)


def code_digest(workspace: Path, module: str, code: bytes, limit: int = 100) -> str:
    """What a tool's version is: the sha256 of its module's bytes, or, where it imports modules of the workspace
    (a sibling, a shared helper; followed from module to module, ``limit`` files at most), of its module's bytes and
    each of those modules' path and bytes. A change of a helper it uses is a new version, as a change of its own."""
    top = PurePosixPath(module).parts[0]
    seen: dict[str, bytes] = {}
    todo = [code]
    while todo and len(seen) < limit:
        for name in _workspace_imports(todo.pop(), top):
            parts = name.split(".")
            for candidate in ("/".join(parts) + ".py", "/".join(parts) + "/__init__.py"):
                found = workspace / candidate
                if candidate not in seen and candidate != module and found.is_file() and not found.is_symlink():
                    seen[candidate] = found.read_bytes()
                    todo.append(seen[candidate])
    digest = hashlib.sha256(code)
    for name in sorted(seen):
        digest.update(b"\0" + name.encode() + b"\0" + seen[name])
    return digest.hexdigest()


def _workspace_imports(code: bytes, top: str) -> set[str]:
    """The dotted names ``code`` imports under the package ``top`` (``components``), and the modules
    ``from components.x import y`` may mean (``components.x``, ``components.x.y``)."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):
        return set()
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in names if name.split(".")[0] == top}
