"""A validation job: what the code generator asks of the validation pipeline, as plain data that can travel (to a
worker on another machine with the same workspace) and its report back.

:class:`Validation` is the seam: :class:`LocalValidation` runs the pipeline here, in a worker thread (one server);
:class:`generators.jobs.queue_pg.QueuedValidation` puts the job in PostgreSQL's queue for the workers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import anyio.to_thread

from generators.validation import ValidationPipeline, ValidationReport
from generators.validation.models import Finding, StageName, StageResult

KIND = "validate"


@dataclass(frozen=True, slots=True)
class ValidationJob:
    """A change to validate against the workspace, and how (see :meth:`ValidationPipeline.run`)."""

    change: dict[str, str]
    stages: list[StageName] | None = None
    component_type: str | None = None
    tenant: str | None = None
    test_paths: list[str] = field(default_factory=list)
    timeout: float | None = None
    subjects: dict[str, list[int]] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ValidationJob:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})

    def run(self, pipeline: ValidationPipeline, workspace: Path) -> ValidationReport:
        """Validate here (blocking)."""
        return pipeline.run(
            workspace,
            self.change,
            stages=self.stages,
            component_type=self.component_type,
            tenant=self.tenant,
            test_paths=self.test_paths,
            timeout=self.timeout,
            subjects=self.subjects,
        )


def report_from_dict(data: Mapping[str, Any]) -> ValidationReport:
    """The report :meth:`ValidationReport.to_dict` wrote."""
    stages = [
        StageResult(
            s["name"],
            s["status"],
            s["duration_ms"],
            [Finding(**f) for f in s.get("findings", [])],
            s.get("note", ""),
            dict(s.get("details", {})),
        )
        for s in data["stages"]
    ]
    return ValidationReport(stages, data["duration_ms"])


class Validation(Protocol):
    """Where validation jobs run."""

    async def validate(self, job: ValidationJob) -> ValidationReport: ...


class LocalValidation:
    """In this process: the pipeline in a worker thread (as before there were workers)."""

    def __init__(self, pipeline: ValidationPipeline, workspace: Path) -> None:
        self.pipeline = pipeline
        self.workspace = workspace

    async def validate(self, job: ValidationJob) -> ValidationReport:
        return await anyio.to_thread.run_sync(job.run, self.pipeline, self.workspace)
