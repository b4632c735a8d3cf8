"""Validation of proposed code changes: syntax, imports, security policy, types, quality, tenant isolation and
tests in a sandbox, each stage reported with findings and its duration."""

from generators.errors import ValidationInputError
from generators.validation.models import (
    STAGES,
    Finding,
    StageName,
    StageResult,
    StageStatus,
    ValidationConfig,
    ValidationReport,
)
from generators.validation.pipeline import ValidationPipeline

__all__ = [
    "STAGES",
    "Finding",
    "StageName",
    "StageResult",
    "StageStatus",
    "ValidationConfig",
    "ValidationInputError",
    "ValidationPipeline",
    "ValidationReport",
]
