"""The improvement cycle: opportunities → improve → validate → approval gate → deploy → monitor → keep or roll back."""

from generators.improvement.models import (
    CandidateRecord,
    CandidateStatus,
    CycleConfig,
    CycleRecord,
    CycleRequest,
    CycleStatus,
    MetricFigures,
    Opportunity,
    OpportunitySource,
)
from generators.improvement.store import CycleStore, SqliteCycleStore

__all__ = [
    "CandidateRecord",
    "CandidateStatus",
    "CycleConfig",
    "CycleRecord",
    "CycleRequest",
    "CycleStatus",
    "CycleStore",
    "MetricFigures",
    "Opportunity",
    "OpportunitySource",
    "SqliteCycleStore",
]
