"""The improvement service: runs cycles in the background (they outlive the request that started them), persists
their state, resumes the monitoring of deployments after a restart, and starts cycles on its own — on a schedule
(autonomous mode) and when a critical alarm fires (emergency cycles, at most one at a time per component).
"""

from __future__ import annotations

import functools
import logging
import queue
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any

import anyio
import anyio.to_thread
from anyio.abc import TaskGroup

from generators.improvement.candidate import CandidateRunner, Job, Progress
from generators.improvement.models import (
    CandidateRecord,
    CycleRecord,
    CycleRequest,
    CycleStatus,
    OpportunitySource,
    Target,
)
from generators.improvement.store import CycleStore

logger = logging.getLogger(__name__)
EMERGENCY_POLL_SECONDS = 0.5
MAX_FINISHED_KEPT = 200
SKIP_AUDIT_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class Emergency:
    tenant: str
    component: str
    alarm: str
    reason: str
    metric: str | None = None


def busy_key(tenant: str, component: str) -> tuple[str, str]:
    """One component, however its name is spelt (``my-comp`` and ``my_comp`` are one module)."""
    return tenant, component.replace("-", "_")


class ImprovementService:
    """One per server, owned by the lifespan. Call :meth:`open` with the lifespan's task group before use."""

    def __init__(
        self,
        runner: CandidateRunner,
        opportunities: OpportunitySource,
        *,
        ready: Callable[[], str | None],
        autonomous_tenants: tuple[str, ...] = (),
        autonomous_interval_seconds: float = 0.0,
        emergency_window_hours: float = 24.0,
    ) -> None:
        """``ready`` says why cycles cannot run now (``None``: they can), e.g. no LLM configured."""
        self.runner = runner
        self.store: CycleStore = runner.store
        self._opportunities = opportunities
        self._ready = ready
        self._autonomous = autonomous_tenants
        self._interval = autonomous_interval_seconds
        self._emergency_hours = emergency_window_hours
        self._tg: TaskGroup | None = None
        self._done: dict[str, anyio.Event] = {}
        self._listeners: dict[str, Progress] = {}
        self._busy: set[tuple[str, str]] = set()
        self._emergencies: queue.SimpleQueue[Emergency] = queue.SimpleQueue()
        self._emergency_cycles: dict[tuple[str, str], str] = {}
        self._skips_audited: dict[tuple[str, str, str], float] = {}

    @property
    def clock(self) -> Callable[[], float]:
        return self.runner.clock

    async def open(self, task_group: TaskGroup) -> list[str]:
        """Mark cycles a stop interrupted, resume monitoring their deployments, start the schedulers."""
        self._tg = task_group
        interrupted = await anyio.to_thread.run_sync(self.store.mark_interrupted, self.clock())
        for cycle_id in interrupted:
            logger.warning("improvement cycle %s was interrupted by a stop of the server", cycle_id)
        await self._adopt_recovered_deployments()
        for record in await anyio.to_thread.run_sync(self.store.by_status, "monitoring"):
            await self._watch(record)
        task_group.start_soon(_forever, "the emergency-cycle loop", self._emergency_loop)
        if self._autonomous and self._interval > 0:
            task_group.start_soon(_forever, "the autonomous-cycle loop", self._autonomous_loop)
        return interrupted

    async def _tenant_of(self, record: CandidateRecord) -> str:
        cycle = await anyio.to_thread.run_sync(self.store.get, record.cycle_id)
        return cycle.tenant if cycle else self.runner.config.default_tenant

    async def _watch(self, record: CandidateRecord) -> None:
        """Judge a monitored deployment in the background (after a restart, or an approval)."""
        assert self._tg is not None
        tenant = await self._tenant_of(record)
        key = busy_key(tenant, record.component)
        owned = key not in self._busy  # a cycle that holds the component keeps holding it
        self._busy.add(key)
        self._tg.start_soon(self._resume, record, tenant, key if owned else None)

    async def _adopt_recovered_deployments(self) -> None:
        """Candidates a stop caught mid-deploy (start-up recovery finished the deploy, or undid it) and held ones
        decided while no cycle heard of it (an approval whose caller went away): monitor what is deployed."""
        for status in ("deploying", "pending_approval"):
            for record in await anyio.to_thread.run_sync(self.store.by_status, status):
                found = await anyio.to_thread.run_sync(self.runner.deployer.store.get, record.deployment_id or "")
                state = found.status if found else "never recorded"
                if found is not None and state == "deployed":
                    await self.runner.start_monitoring(record, found.id, found.updated_at)
                elif state == "rejected":
                    await self.runner.save(record, "rejected", message="the change was rejected by an approver")
                elif status == "deploying" and state != "pending_approval":
                    await self.runner.save(
                        record, "interrupted", message=f"the server stopped mid-deploy; it is {state}"
                    )
                elif status == "deploying":
                    await self.runner.save(record, "pending_approval", message="held for approval")

    # -- starting and following cycles

    async def start(self, request: CycleRequest) -> CycleRecord:
        """Persist a new cycle and run it in the background; returns the record as started."""
        if self._tg is None:
            raise RuntimeError("the improvement service is not open")
        now = self.clock()
        params = {k: v for k, v in asdict(request).items() if k not in ("tenant", "actor", "trigger")}
        cycle = CycleRecord(
            uuid.uuid4().hex, request.tenant, request.actor, request.trigger, "running", now, now, params
        )
        self._prune()
        self._done[cycle.id] = anyio.Event()
        await anyio.to_thread.run_sync(self.store.create, cycle)
        self._tg.start_soon(self._run, cycle, request)
        return cycle

    def _prune(self) -> None:
        """Forget finished cycles' events beyond the newest few hundred (their records stay in the store)."""
        finished = [cycle_id for cycle_id, done in self._done.items() if done.is_set()]
        for cycle_id in finished[: max(0, len(finished) - MAX_FINISHED_KEPT)]:
            del self._done[cycle_id]
        self._emergency_cycles = {k: v for k, v in self._emergency_cycles.items() if v in self._done}

    def listen(self, cycle_id: str, progress: Progress | None) -> None:
        """Send the cycle's progress to ``progress`` (``None`` stops it)."""
        if progress is None:
            self._listeners.pop(cycle_id, None)
        else:
            self._listeners[cycle_id] = progress

    async def wait(self, cycle_id: str, timeout: float) -> CycleRecord | None:
        """The cycle once it has finished, or as it stands after ``timeout`` seconds."""
        done = self._done.get(cycle_id)
        if done is not None:
            with anyio.move_on_after(timeout):
                await done.wait()
        return await anyio.to_thread.run_sync(self.store.get, cycle_id)

    async def get(self, cycle_id: str) -> CycleRecord | None:
        return await anyio.to_thread.run_sync(self.store.get, cycle_id)

    def request_emergency(self, emergency: Emergency) -> None:
        """Thread-safe: ask for an emergency cycle (picked up within a second)."""
        self._emergencies.put(emergency)

    async def after_approval(self, deployment_id: str, deployed_at: float) -> bool:
        """An approved change of a cycle was deployed: monitor it like any other. False when not a cycle's."""
        record = await anyio.to_thread.run_sync(self.store.by_deployment, deployment_id)
        if record is None or self._tg is None:
            return False
        await self.runner.start_monitoring(record, deployment_id, deployed_at)
        await self._watch(record)
        return True

    async def after_rejection(self, deployment_id: str) -> None:
        record = await anyio.to_thread.run_sync(self.store.by_deployment, deployment_id)
        if record is not None:
            await self.runner.save(record, "rejected", message="the change was rejected by an approver")

    # -- the cycle

    async def _run(self, cycle: CycleRecord, request: CycleRequest) -> None:
        progress = self._progress(cycle.id)
        status: CycleStatus = "completed"
        error: str | None = None
        ended = False  # False when cancelled (the server stops): the cycle stays running and is marked interrupted
        try:
            await self._audit("improvement_cycle_started", cycle.id, cycle.actor, cycle.tenant,
                              {"trigger": cycle.trigger, **cycle.params})  # fmt: skip
            await progress("opportunities", f"analysing {request.analysis_window_hours:g} h of telemetry")
            targets = await anyio.to_thread.run_sync(
                self._opportunities,
                request.tenant,
                request.analysis_window_hours,
                request.risk_tolerance,
                request.component,
            )
            if request.component is not None and request.trigger == "emergency" and not targets:
                targets = [self._emergency_target(request)]
            picked = _one_per_component(targets)[: request.max_improvements]
            await progress("opportunities", f"{len(picked)} opportunities picked of {len(targets)} found")
            records = [
                CandidateRecord(cycle.id, i, t.component, t.metric, "queued", self.clock(), detail=_target_detail(t))
                for i, t in enumerate(picked)
            ]
            for record in records:
                await anyio.to_thread.run_sync(self.store.save_candidate, record)
            limiter = anyio.CapacityLimiter(self.runner.config.max_concurrency)
            async with anyio.create_task_group() as group:
                for record, target in zip(records, picked, strict=True):
                    job = Job(request.tenant, target, request.dry_run, progress, request.actor, cycle.id)
                    group.start_soon(self._candidate, record, job, limiter)
            ended = True
        except Exception as exc:  # a broken cycle is reported, never takes the server down
            logger.exception("improvement cycle %s failed", cycle.id)
            status, error, ended = "failed", f"{type(exc).__name__}: {exc}", True
        finally:
            with anyio.CancelScope(shield=True):
                try:
                    if ended:
                        await anyio.to_thread.run_sync(self.store.finish, cycle.id, status, self.clock(), error)
                        await self._audit("improvement_cycle_finished", cycle.id, cycle.actor, cycle.tenant,
                                          {"status": status, "error": error})  # fmt: skip
                    await progress("done", f"cycle {status}" if ended else "cycle interrupted: the server is stopping")
                except Exception:
                    logger.exception("could not record the end of improvement cycle %s", cycle.id)
                finally:
                    self._listeners.pop(cycle.id, None)
                    self._done[cycle.id].set()

    async def _candidate(self, record: CandidateRecord, job: Job, limiter: anyio.CapacityLimiter) -> None:
        """One candidate; nothing it raises reaches its siblings (each outcome is recorded instead)."""
        key = busy_key(job.tenant, record.component)
        try:
            if key in self._busy:
                await self.runner.save(record, "skipped", message="another cycle is working on this component")
                return
            self._busy.add(key)
            try:
                async with limiter:
                    monitor = await self._guarded(record, job)
                if monitor:
                    await self._judge(record, job.tenant, job.target.direction, job.progress)
            finally:
                self._busy.discard(key)
        except Exception:
            logger.exception("improvement candidate %s of cycle %s could not be recorded", record.component,
                             record.cycle_id)  # fmt: skip

    async def _guarded(self, record: CandidateRecord, job: Job) -> bool:
        try:
            return await self.runner.improve_and_deploy(record, job)
        except Exception as exc:
            logger.exception("improvement of %s failed", record.component)
            await self.runner.save(record, "error", message=f"{type(exc).__name__}: {exc}")
            return False

    async def _judge(self, record: CandidateRecord, tenant: str, direction: str, progress: Progress) -> None:
        try:
            await self.runner.monitor(record, tenant, direction, progress)
        except Exception as exc:
            logger.exception("judging the deployment of %s failed", record.component)
            message = f"judging the change failed: {type(exc).__name__}: {exc}"
            try:
                await self.runner.save(record, "error", message=message)
            except Exception:
                logger.exception("could not record that judging %s failed", record.component)

    async def _resume(self, record: CandidateRecord, tenant: str, key: tuple[str, str] | None) -> None:
        try:
            await self._judge(record, tenant, str(record.detail.get("direction", "up_is_bad")), _quiet)
        finally:
            if key is not None:
                self._busy.discard(key)

    def _progress(self, cycle_id: str) -> Progress:
        async def send(stage: str, message: str) -> None:
            listener = self._listeners.get(cycle_id)
            if listener is None:
                return
            try:
                await listener(stage, message)
            except Exception:  # the caller went away; the cycle goes on
                self._listeners.pop(cycle_id, None)

        return send

    # -- cycles nobody asked for

    async def _autonomous_loop(self) -> None:
        while True:
            await anyio.sleep(self._interval)
            why = self._ready()
            if why is not None:
                logger.warning("autonomous improvement cycle not started: %s", why)
                continue
            for tenant in self._autonomous:
                try:
                    await self.start(CycleRequest(tenant, "autonomous", trigger="autonomous"))
                except Exception:
                    logger.exception("could not start the autonomous improvement cycle of %s", tenant)

    async def _emergency_loop(self) -> None:
        while True:
            try:
                emergency = self._emergencies.get_nowait()
            except queue.Empty:
                await anyio.sleep(EMERGENCY_POLL_SECONDS)
                continue
            try:
                await self._emergency(emergency)
            except Exception:
                logger.exception("could not start an emergency cycle for %s", emergency.component)

    async def _emergency(self, e: Emergency) -> None:
        key = busy_key(e.tenant, e.component)
        why = self._ready()
        running = self._emergency_cycles.get(key)
        if why is None and (key in self._busy or (running is not None and not self._done[running].is_set())):
            why = "a cycle is already working on this component"
        if why is not None:
            logger.warning("emergency cycle for %s (alarm %s) not started: %s", e.component, e.alarm, why)
            last = self._skips_audited.get((*key, e.alarm), float("-inf"))
            if self.clock() - last >= SKIP_AUDIT_SECONDS:  # a flapping alarm is recorded once a minute, not per event
                self._skips_audited[(*key, e.alarm)] = self.clock()
                await self._audit("emergency_cycle_skipped", e.component, f"alarm:{e.alarm}", e.tenant,
                                  {"alarm": e.alarm, "why": why})  # fmt: skip
            return
        request = CycleRequest(
            e.tenant,
            f"alarm:{e.alarm}",
            self._emergency_hours,
            1,
            risk_tolerance="high",
            trigger="emergency",
            component=e.component,
            metric=e.metric,
            reason=f"alarm {e.alarm}: {e.reason}",
        )
        cycle = await self.start(request)
        self._emergency_cycles[key] = cycle.id
        logger.warning("alarm %s started emergency improvement cycle %s for %s", e.alarm, cycle.id, e.component)

    async def _audit(self, kind: str, subject: str, actor: str, tenant: str, detail: dict[str, Any]) -> None:
        call = functools.partial(self.runner.audit.append, kind, subject, actor=actor, tenant=tenant, detail=detail)
        await anyio.to_thread.run_sync(call)

    def _emergency_target(self, request: CycleRequest) -> Target:
        assert request.component is not None
        metric = request.metric or "errors"
        return Target(request.component, metric, f"resolve {request.reason}", 0.0, "high", evidence=request.reason)


async def _forever(name: str, loop: Callable[[], Awaitable[None]]) -> None:
    """Run a service loop; should it ever raise, log it and start it again rather than stop the server."""
    while True:
        try:
            await loop()
        except Exception:
            logger.exception("%s failed; restarting it", name)
            await anyio.sleep(1.0)


async def _quiet(stage: str, message: str) -> None:
    logger.info("improvement %s: %s", stage, message)


def _one_per_component(targets: list[Target]) -> list[Target]:
    seen: set[str] = set()
    out = []
    for target in targets:
        if target.component not in seen:
            seen.add(target.component)
            out.append(target)
    return out


def _target_detail(target: Target) -> dict[str, Any]:
    return {
        "goal": target.goal,
        "impact_score": target.impact_score,
        "risk": target.risk,
        "direction": target.direction,
        "evidence": target.evidence,
        "insight_ids": list(target.insight_ids),
    }
