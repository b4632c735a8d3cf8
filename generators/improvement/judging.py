"""The verdict on a deployed candidate after its monitoring period: measured, then kept or rolled back (the reason
says which evidence decided, with its figures), and audited."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import anyio
import anyio.to_thread

from generators.deploy import DeployError
from generators.improvement.models import CandidateRecord, CandidateStatus, OpportunityKind
from generators.improvement.runner import ACTOR

if TYPE_CHECKING:
    from generators.improvement.runner import Progress, Runner


async def judge(runner: Runner, record: CandidateRecord, tenant: str, direction: str, progress: Progress) -> None:
    """Wait out the monitoring period, judge the change, keep it or roll it back."""
    assert record.deployment_id is not None and record.monitor_until is not None
    await runner.clock.sleep_until(record.monitor_until)
    deployment = await anyio.to_thread.run_sync(runner.deployer.store.get, record.deployment_id)
    if deployment is None or deployment.status != "deployed":
        state = deployment.status if deployment else "missing"
        status: CandidateStatus = "rolled_back" if state == "rolled_back" else "error"
        await runner.save(record, status, message=f"the deployment is {state}; nothing left to judge")
        return
    await progress("measure", f"{record.component}: comparing before and after")
    from generators.improvement.evaluation import Subject, evaluate

    kind: OpportunityKind = "errors" if record.detail.get("kind") == "errors" else "metric"
    subject = Subject(
        tenant,
        record.component,
        record.metric,
        direction,  # type: ignore[arg-type]
        float(record.detail.get("deployed_at", deployment.updated_at)),
        record.monitor_until,
        tuple(record.detail.get("test_paths", ())),
        kind,
    )
    versions = await anyio.to_thread.run_sync(runner.deployer.store.files, deployment.id)
    judge = functools.partial(
        evaluate,
        runner.deployer.workspace,
        subject,
        versions,
        runner.figures,
        runner.generator().pipeline,
        runner.config,
        runner.generator().benchmarks,
    )
    verdict = await anyio.to_thread.run_sync(judge)
    figures = {"figures": verdict.figures, "reasons": verdict.reasons, "decision": verdict.decision}
    await anyio.to_thread.run_sync(runner.deployer.store.merge_detail, deployment.id, figures)
    detail = {"component": record.component, "kind": kind, "regressed": verdict.regressed,
              "summary": verdict.summary, **figures}  # fmt: skip
    call = functools.partial(runner.audit.append, "improvement_verdict", deployment.id, actor=ACTOR, tenant=tenant,
                             detail=detail)  # fmt: skip
    await anyio.to_thread.run_sync(call)
    record.detail["figures"], record.detail["reasons"] = verdict.figures, list(verdict.reasons)
    if verdict.kept:
        await runner.save(record, "kept", message=f"kept: {verdict.summary}")
    elif not runner.config.rollback_enabled:  # "regressed": not better, left in place
        await runner.save(record, "regressed", message=f"{verdict.summary}; enable_improvement_rollback is off: "
                        "left deployed")  # fmt: skip
    else:
        await _roll_back(runner, record, deployment.id, verdict.rollback_reason, progress)


async def _roll_back(runner: Runner, record: CandidateRecord, deployment_id: str, why: str, progress: Progress) -> None:
    """Restore the previous bytes; ``why`` (``regression: ...``, ``no measurable improvement: ...``) is the
    rollback reason."""
    await progress("rollback", f"{record.component}: rolling back ({why})")
    call = functools.partial(runner.deployer.rollback, deployment_id, actor=ACTOR, reason=why)
    try:
        await anyio.to_thread.run_sync(call)
    except DeployError as exc:
        await runner.save(record, "regressed", message=f"not kept ({why}), and the rollback was refused: {exc}")
        return
    await runner.save(record, "rolled_back", message=f"rolled back: {why}")
