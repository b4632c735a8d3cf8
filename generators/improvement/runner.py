"""What a candidate's steps share: one candidate's fixed inputs (:class:`CandidateInputs`), how progress is reported
(and relayed to whoever follows a cycle), and the part of the runner the steps in other modules (attempting,
judging) use, as a protocol, so that they need not import the runner that calls them."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, Unpack

from generators.clock import Clock
from generators.errors import failure_text
from generators.improvement.models import (
    CandidateDetail,
    CandidateRecord,
    CandidateStatus,
    CycleConfig,
    MetricFigures,
    Opportunity,
)

if TYPE_CHECKING:
    from generators.codegen.generation import CodeGenerator
    from generators.codegen.rounds import GenerationResult
    from generators.deploy import AuditLog, Deployer
    from generators.improvement.attempts import AttemptArchive

logger = logging.getLogger(__name__)
ACTOR = "improvement-cycle"
Progress = Callable[[str, str], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class CandidateInputs:
    """One candidate's fixed inputs."""

    tenant: str
    opportunity: Opportunity
    dry_run: bool
    progress: Progress
    requested_by: str = ACTOR  # who started the cycle (a key name, "autonomous", "alarm:<name>")
    cycle_id: str = ""


class Runner(Protocol):
    """The candidate runner as its steps see it (:class:`~generators.improvement.candidate.CandidateRunner`)."""

    attempts: AttemptArchive | None
    deployer: Deployer
    audit: AuditLog
    generator: Callable[[], CodeGenerator]
    figures: MetricFigures
    config: CycleConfig
    clock: Clock

    async def save(
        self, record: CandidateRecord, status: CandidateStatus, **detail: Unpack[CandidateDetail]
    ) -> None: ...

    async def generate(
        self, inputs: CandidateInputs, module: str, text: str, record: CandidateRecord
    ) -> GenerationResult: ...

    def audit_generation(
        self, inputs: CandidateInputs, module: str, result: GenerationResult | None, error: str | None = None
    ) -> None: ...


@asynccontextmanager
async def failure_recorded(runner: Runner, record: CandidateRecord, what: str, prefix: str = "") -> AsyncIterator[None]:
    """Record anything the body raises as the candidate's error (the detail logged under an id, see
    :func:`generators.errors.failure_text`) instead of raising it: a candidate's failure never reaches its cycle."""
    try:
        yield
    except Exception as exc:
        message = prefix + failure_text(exc, logger, what)
        try:
            await runner.save(record, "error", message=message)
        except Exception:  # the store itself is broken: the log is all that is left
            logger.exception("could not record that %s failed", what)


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
