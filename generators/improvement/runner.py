"""What a candidate's steps share: one candidate's fixed inputs (:class:`Job`), how progress is reported (and relayed
to whoever follows a cycle), and the part of the runner the steps in other modules (attempting, judging) use, as a
protocol, so that they need not import the runner that calls them."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, Unpack

from generators.clock import Clock
from generators.improvement.models import (
    CandidateDetail,
    CandidateRecord,
    CandidateStatus,
    CycleConfig,
    MetricFigures,
    Target,
)

if TYPE_CHECKING:
    from generators.codegen.generation import CodeGenerator
    from generators.codegen.rounds import GenerationResult
    from generators.deploy import AuditLog, Deployer
    from generators.improvement.attempts import SqliteAttemptArchive

logger = logging.getLogger(__name__)
ACTOR = "improvement-cycle"
Progress = Callable[[str, str], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Job:
    """One candidate's fixed inputs."""

    tenant: str
    target: Target
    dry_run: bool
    progress: Progress
    requested_by: str = ACTOR  # who started the cycle (a key name, "autonomous", "alarm:<name>")
    cycle_id: str = ""


class Runner(Protocol):
    """The candidate runner as its steps see it (:class:`~generators.improvement.candidate.CandidateRunner`)."""

    attempts: SqliteAttemptArchive | None
    deployer: Deployer
    audit: AuditLog
    generator: Callable[[], CodeGenerator]
    figures: MetricFigures
    config: CycleConfig
    clock: Clock

    async def save(
        self, record: CandidateRecord, status: CandidateStatus, **detail: Unpack[CandidateDetail]
    ) -> None: ...

    async def generate(self, job: Job, module: str, text: str, record: CandidateRecord) -> GenerationResult: ...

    def audit_generation(
        self, job: Job, module: str, result: GenerationResult | None, error: str | None = None
    ) -> None: ...


def relay(listeners: dict[str, Progress], cycle_id: str) -> Progress:
    """The progress of one cycle, told to whoever listens to it now (:meth:`ImprovementService.listen`); a listener
    that fails (its caller went away) is dropped and the cycle goes on."""

    async def send(stage: str, message: str) -> None:
        listener = listeners.get(cycle_id)
        if listener is None:
            return
        try:
            await listener(stage, message)
        except Exception:
            listeners.pop(cycle_id, None)

    return send


async def to_log(stage: str, message: str) -> None:
    """The progress of work nobody follows (a change judged after a restart): logged."""
    logger.info("improvement %s: %s", stage, message)
