"""The improvement service: runs cycles in the background (they outlive the request that started them), persists
their state, resumes the monitoring of deployments after a restart, and starts cycles on its own (see
:mod:`generators.improvement.triggers`). A cycle acts on the opportunities :mod:`generators.improvement.picking`
picks, lists the others with the reason, and ends with a status its candidates' outcomes decide (see
:data:`~generators.improvement.models.CycleStatus`).
"""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import Awaitable, Callable, Collection
from dataclasses import asdict
from typing import Any

import anyio
import anyio.to_thread
from anyio.abc import TaskGroup

from generators.clock import Clock
from generators.deploy import Deployment
from generators.errors import CycleNotFoundError, failure_text
from generators.improvement.candidate import CandidateRunner
from generators.improvement.models import (
    CandidateRecord,
    CycleRecord,
    CycleRequest,
    CycleStatus,
    Opportunity,
    OpportunitySource,
    can_move,
    cycle_outcome,
    emergency_opportunity,
    outcome_counts,
)
from generators.improvement.picking import MAX_LEFT_OUT, Picked, busy_key, recent_rollbacks, select
from generators.improvement.risk import assess_risks
from generators.improvement.runner import CandidateInputs, Progress, failure_recorded, relay, to_log
from generators.improvement.store import CycleStore
from generators.improvement.triggers import Emergency, Triggers
from generators.llm import SpendCapReached
from generators.llm.spend import spend_scope

logger = logging.getLogger(__name__)
MAX_FINISHED_KEPT = 200
# a candidate in one of these put nothing live: an emergency cycle with only these can be taken up again
UNDEPLOYED = (
    "queued", "generating", "validation_failed", "skipped", "dry_run", "deploy_failed", "error", "interrupted",
)  # fmt: skip
__all__ = ["Emergency", "ImprovementService"]


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
        self.cycles = runner.cycles
        self._opportunities = opportunities
        self._triggers = Triggers(
            self,
            runner.audit,
            runner.clock,
            ready=ready,
            autonomous_tenants=autonomous_tenants,
            autonomous_interval_seconds=autonomous_interval_seconds,
            emergency_window_hours=emergency_window_hours,
        )
        self._tg: TaskGroup | None = None
        self._done: dict[str, anyio.Event] = {}
        self._listeners: dict[str, Progress] = {}
        self._busy: set[tuple[str, str]] = set()
        self._settling = anyio.Lock()  # a cycle's status is derived by one task at a time (its end, a late verdict)

    @property
    def clock(self) -> Clock:
        return self.runner.clock

    async def open(self, task_group: TaskGroup, *, lead: bool = True) -> list[str]:
        """Start taking alarms' emergencies. With ``lead`` (one server; on several replicas, see :meth:`lead`), also
        the schedule, and adopt the cycles a stop left behind; returns their ids."""
        self._tg = task_group
        self._triggers.open(task_group)
        if not lead:
            return []
        self._triggers.schedule(task_group)
        return await self.take_over(())

    async def lead(self, task_group: TaskGroup, alive: Callable[[], Awaitable[Collection[str]]], every: float) -> None:
        """The lease holder's part, until cancelled (the lease is lost): the schedule, and the cycles of the replicas
        that are gone, adopted every ``every`` seconds (``alive`` names the replicas alive). The first adoption is
        the caller's (:meth:`take_over`, before the replica serves)."""
        self._triggers.schedule(task_group)
        while True:
            await anyio.sleep(every)
            await self.take_over(await alive())

    async def take_over(self, alive: Collection[str]) -> list[str]:
        """Adopt the cycles whose owner is not ``alive`` (nor this server) and that still want one; exactly one
        server adopts each. A running emergency cycle with no change deployed yet is resumed by a new cycle for its
        alarm; another running cycle is marked interrupted; the changes they were deploying or watching are seen
        through. Returns the ids adopted."""
        alive = {*alive, self.cycles.owner}
        adopted: list[str] = []
        for cycle in await self.cycles.orphans(alive):
            if await self.cycles.adopt(cycle.id, alive):
                adopted.append(cycle.id)
                await self._adopted(cycle)
        return adopted

    async def _adopted(self, cycle: CycleRecord) -> None:
        resumable = cycle.trigger == "emergency" and not any(c.status not in UNDEPLOYED for c in cycle.candidates)
        if cycle.status == "running" and await self.cycles.interrupt(cycle.id, self.clock()):
            logger.warning("improvement cycle %s was interrupted: the server running it stopped", cycle.id)
            if resumable:
                await self._resume_emergency(cycle)
                return
        found = await self.cycles.get(cycle.id)
        candidates = found.candidates if found is not None else []
        unsettled = [c for c in candidates if c.status in ("deploying", "pending_approval")]
        await self._adopt_recovered_deployments(unsettled)
        for record in candidates:
            if record.status == "monitoring":
                await self._watch(record)

    async def _resume_emergency(self, cycle: CycleRecord) -> None:
        """An alarm's cycle that stopped before it deployed anything: a new cycle takes the alarm up again."""
        request = CycleRequest(cycle.tenant, cycle.actor, trigger=cycle.trigger, **cycle.params)
        resumed = await self.start(request)
        await self._audit("improvement_cycle_resumed", resumed.id, cycle.actor, cycle.tenant,
                          {"resumes": cycle.id, "component": request.component})  # fmt: skip
        logger.warning("emergency improvement cycle %s resumes %s (%s)", resumed.id, cycle.id, request.component)

    def is_busy(self, tenant: str, component: str) -> bool:
        """A cycle (or the judging of a change) holds the component."""
        return busy_key(tenant, component) in self._busy

    def is_running(self, cycle_id: str) -> bool:
        done = self._done.get(cycle_id)
        return done is not None and not done.is_set()

    async def _tenant_of(self, record: CandidateRecord) -> str:
        cycle = await self.cycles.get(record.cycle_id)
        return cycle.tenant if cycle else self.runner.config.default_tenant

    async def _watch(self, record: CandidateRecord) -> None:
        """Judge a monitored deployment in the background (after a restart, or an approval)."""
        assert self._tg is not None
        tenant = await self._tenant_of(record)
        key = busy_key(tenant, record.component)
        owned = key not in self._busy  # a cycle that holds the component keeps holding it
        self._busy.add(key)
        self._tg.start_soon(self._resume, record, tenant, key if owned else None)

    async def _adopt_recovered_deployments(self, records: list[CandidateRecord]) -> None:
        """Candidates a stop caught mid-deploy (start-up recovery finished the deploy, or undid it) and held ones
        decided while no cycle heard of it (an approval whose caller went away): monitor what is deployed."""
        for record in records:
            status = record.status
            found = await anyio.to_thread.run_sync(self.runner.deployer.store.get, record.deployment_id or "")
            state = found.status if found else "never recorded"
            if found is not None and state == "deployed":
                await self.runner.start_monitoring(record, found.id, found.updated_at)
            elif state == "rejected":
                await self.runner.save(record, "rejected", message="the change was rejected by an approver")
                await self._settle(record.cycle_id)
            elif status == "deploying" and state != "pending_approval":
                await self.runner.save(record, "interrupted", message=f"the server stopped mid-deploy; it is {state}")
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
        await self.cycles.create(cycle)
        with spend_scope(request.tenant, cycle.id, request.actor):  # the cycle's task inherits whom its LLM use costs
            self._tg.start_soon(self._run, cycle, request)
        return cycle

    async def run(self, request: CycleRequest, progress: Progress, timeout: float) -> CycleRecord:
        """Start a cycle and follow it: its progress goes to ``progress`` until it ends or ``timeout`` seconds have
        passed (it runs on, see :meth:`get`); returns it as it then stands."""
        cycle = await self.start(request)
        self.listen(cycle.id, progress)
        await progress("started", f"cycle {cycle.id} (follow it with get_improvement_cycle)")
        try:
            return await self.wait(cycle.id, timeout) or cycle
        finally:
            self.listen(cycle.id, None)

    def _prune(self) -> None:
        """Forget finished cycles' events beyond the newest few hundred (their records stay in the store)."""
        finished = [cycle_id for cycle_id, done in self._done.items() if done.is_set()]
        for cycle_id in finished[: max(0, len(finished) - MAX_FINISHED_KEPT)]:
            del self._done[cycle_id]
        self._triggers.forget(self._done.__contains__)

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
        return await self.cycles.get(cycle_id)

    async def get(self, cycle_id: str) -> CycleRecord | None:
        return await self.cycles.get(cycle_id)

    async def visible(self, cycle_id: str, may_use: Callable[[str], bool]) -> CycleRecord:
        """The cycle if the caller ``may_use`` its tenant; else, as unknown, :class:`CycleNotFoundError`."""
        found = await self.cycles.get(cycle_id)
        if found is None or not may_use(found.tenant):
            raise CycleNotFoundError(cycle_id)
        return found

    def request_emergency(self, emergency: Emergency) -> None:
        """Thread-safe: ask for an emergency cycle (handed to the event loop, which starts it)."""
        self._triggers.request_emergency(emergency)

    async def after_decision(self, change: Deployment) -> None:
        """A held change was decided (a listener of :class:`generators.changes.ChangeService`): an approved change of
        a cycle is monitored like any it deployed itself; a rejected one settles its cycle."""
        if change.status == "deployed":
            await self.after_approval(change.id, change.updated_at)
        elif change.status == "rejected":
            await self.after_rejection(change.id)

    async def after_approval(self, deployment_id: str, deployed_at: float) -> bool:
        """An approved change of a cycle was deployed: monitor it like any other. False when not a cycle's."""
        record = await self.cycles.by_deployment(deployment_id)
        if record is None or self._tg is None:
            return False
        if not can_move(record, "monitoring"):  # e.g. it broke before it was held: nothing to monitor
            logger.warning("approved change %s: its candidate is %s, not monitored", deployment_id, record.status)
            return False
        await self.runner.start_monitoring(record, deployment_id, deployed_at)
        await self._watch(record)
        return True

    async def after_rejection(self, deployment_id: str) -> None:
        record = await self.cycles.by_deployment(deployment_id)
        if record is not None and can_move(record, "rejected"):
            await self.runner.save(record, "rejected", message="the change was rejected by an approver")
            await self._settle(record.cycle_id)

    async def _settle(self, cycle_id: str) -> None:
        """A candidate of a cycle that has ended was decided later (an approval and its verdict, a rejection): the
        cycle's status is derived anew. Cycles that are running, interrupted or broke keep theirs."""
        async with self._settling:
            cycle = await self.cycles.get(cycle_id)
            if cycle is None or cycle.status in ("running", "interrupted") or cycle.error is not None:
                return
            status = cycle_outcome(cycle.candidates)
            if status == cycle.status:
                return
            await self.cycles.finish(cycle_id, status, self.clock(), None)
        detail = {"status": status, "was": cycle.status, "outcomes": outcome_counts(cycle.candidates)}
        await self._audit("improvement_cycle_settled", cycle_id, cycle.actor, cycle.tenant, detail)

    # -- the cycle

    async def _run(self, cycle: CycleRecord, request: CycleRequest) -> None:
        progress = relay(self._listeners, cycle.id)
        status: CycleStatus = "failed"
        error: str | None = None
        ended = False  # False when cancelled (the server stops): the cycle stays running and is marked interrupted
        reserved: set[tuple[str, str]] = set()  # components this cycle holds whose candidate has not started
        try:
            await self._audit("improvement_cycle_started", cycle.id, cycle.actor, cycle.tenant,
                              {"trigger": cycle.trigger, **cycle.params})  # fmt: skip
            await progress("opportunities", f"analysing {request.analysis_window_hours:g} h of telemetry")
            found = await anyio.to_thread.run_sync(
                self._opportunities, request.tenant, request.analysis_window_hours, request.component
            )
            if request.component is not None and request.trigger == "emergency" and not found:
                found = [emergency_opportunity(request)]
            picked = await self._pick(cycle, request, found, reserved)
            left = f"; {len(found) - len(picked)} left out" if len(found) > len(picked) else ""
            await progress("opportunities", f"{len(picked)} opportunities picked of {len(found)} found{left}")
            records = [p.candidate(cycle.id, i, self.clock()) for i, p in enumerate(picked)]
            for record in records:
                await self.cycles.save_candidate(record)
            limiter = anyio.CapacityLimiter(self.runner.config.max_concurrency)
            capped: list[str] = []  # why the model may not be asked any more in this cycle (a spend cap)
            async with anyio.create_task_group() as group:
                for record, chosen in zip(records, picked, strict=True):
                    inputs = CandidateInputs(
                        request.tenant, chosen.opportunity, request.dry_run, progress, request.actor, cycle.id
                    )
                    group.start_soon(self._candidate, record, inputs, limiter, reserved, capped)
            ended = True
        except Exception as exc:  # a broken cycle is reported, never takes the server down
            error, ended = failure_text(exc, logger, f"improvement cycle {cycle.id}"), True
        finally:
            for key in reserved:  # held for candidates that never started
                self._busy.discard(key)
            with anyio.CancelScope(shield=True):
                try:
                    if ended:
                        status = await self._finish(cycle, error)
                    await progress("done", f"cycle {status}" if ended else "cycle interrupted: the server is stopping")
                except Exception:
                    logger.exception("could not record the end of improvement cycle %s", cycle.id)
                finally:
                    self._listeners.pop(cycle.id, None)
                    self._done[cycle.id].set()

    async def _pick(
        self, cycle: CycleRecord, request: CycleRequest, found: list[Opportunity], reserved: set[tuple[str, str]]
    ) -> list[Picked]:
        """The opportunities to act on (their components reserved for this cycle in ``reserved``); the others are
        stored with the cycle, each with the reason it was left out."""
        runner = self.runner
        assess = functools.partial(
            assess_risks,
            runner.deployer.workspace,
            found,
            locate=lambda t: runner.locate(request.tenant, t.component, t.own_code),
            rollbacks=lambda component: recent_rollbacks(
                runner.deployer.store, request.tenant, component, self.clock()
            ),
            shared_packages=runner.config.shared_packages,
        )
        assessed = await anyio.to_thread.run_sync(assess)
        picked, left = select(
            assessed,
            max_improvements=request.max_improvements,
            tolerance=request.risk_tolerance,
            busy=lambda t: busy_key(request.tenant, t.component) in self._busy,
            no_module=lambda t: (
                f"no module for component {t.component!r} in the workspace (looked for "
                f"components/[{request.tenant}/]{t.component}.py)"
            ),
        )
        keys = {busy_key(request.tenant, p.opportunity.component) for p in picked}
        self._busy |= keys  # no await since the busy check: no other cycle can take them in between
        reserved |= keys
        if left:
            entries = [entry.to_dict() for entry in left[:MAX_LEFT_OUT]]
            await self.cycles.set_left_out(cycle.id, entries, len(left))
        return picked

    async def _finish(self, cycle: CycleRecord, error: str | None) -> CycleStatus:
        """Record the end of the cycle's run, its status derived from its candidates' outcomes."""
        async with self._settling:
            found = await self.cycles.get(cycle.id)
            if found is not None and found.status == "interrupted":  # another server took it over: its record now
                logger.warning("improvement cycle %s was taken over by another server; its end is theirs", cycle.id)
                return "interrupted"
            candidates = found.candidates if found else []
            status: CycleStatus = "failed" if error is not None else cycle_outcome(candidates)
            await self.cycles.finish(cycle.id, status, self.clock(), error)
        detail = {
            "status": status,
            "error": error,
            "outcomes": outcome_counts(candidates),
            "left_out": found.left_out_total if found else 0,
        }
        await self._audit("improvement_cycle_finished", cycle.id, cycle.actor, cycle.tenant, detail)
        return status

    async def _candidate(
        self,
        record: CandidateRecord,
        inputs: CandidateInputs,
        limiter: anyio.CapacityLimiter,
        reserved: set[tuple[str, str]],
        capped: list[str],
    ) -> None:
        """One candidate, its component reserved by the cycle; nothing it raises reaches its siblings (each outcome
        is recorded instead). Once one reached a spend cap, those not yet started are skipped with its reason."""
        key = busy_key(inputs.tenant, record.component)
        reserved.discard(key)  # released here from now on
        try:
            async with limiter:
                if capped:
                    await self.runner.skip(record, inputs, f"not started: {capped[0]}")
                    return
                monitor = await self._guarded(record, inputs)
                if record.status == "error" and record.detail.get("error_type") == SpendCapReached.__name__:
                    capped.append(str(record.detail.get("message", "a spend cap is reached")))
            if monitor:
                await self._judge(record, inputs.tenant, inputs.opportunity.direction, inputs.progress)
        except Exception:
            logger.exception("improvement candidate %s of cycle %s could not be recorded", record.component,
                             record.cycle_id)  # fmt: skip
        finally:
            self._busy.discard(key)

    async def _guarded(self, record: CandidateRecord, inputs: CandidateInputs) -> bool:
        async with failure_recorded(self.runner, record, f"improvement of {record.component}"):
            return await self.runner.improve_and_deploy(record, inputs)
        return False

    async def _judge(self, record: CandidateRecord, tenant: str, direction: str, progress: Progress) -> None:
        async with failure_recorded(self.runner, record, f"judging {record.component}", "judging the change failed: "):
            await self.runner.monitor(record, tenant, direction, progress)

    async def _resume(self, record: CandidateRecord, tenant: str, key: tuple[str, str] | None) -> None:
        try:
            await self._judge(record, tenant, str(record.detail.get("direction", "up_is_bad")), to_log)
            await self._settle(record.cycle_id)
        finally:
            if key is not None:
                self._busy.discard(key)

    async def _audit(self, kind: str, subject: str, actor: str, tenant: str, detail: dict[str, Any]) -> None:
        call = functools.partial(self.runner.audit.append, kind, subject, actor=actor, tenant=tenant, detail=detail)
        await anyio.to_thread.run_sync(call)
