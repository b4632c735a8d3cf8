"""Live analysis at ingest time: every stored metric point goes through its series' streaming anomaly detector,
every stored log line through its tenant's pattern miner. :class:`ObservedStore` wraps the store so that every
writer (agents' ``ingest_telemetry``, the local sampler, CloudWatch streaming) is analysed the same way.
"""

from telemetry.learning.live.anomalies import ANOMALY_EVENT, AnomalyWatch
from telemetry.learning.live.observed import ObservedStore
from telemetry.learning.live.patterns import ErrorPattern, PatternReport, PatternWatch

__all__ = ["ANOMALY_EVENT", "AnomalyWatch", "ErrorPattern", "ObservedStore", "PatternReport", "PatternWatch"]
