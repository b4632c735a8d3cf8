"""Live analysis at ingest time: every stored metric point goes through its series' streaming anomaly detector,
every stored log line through its tenant's pattern miner. :class:`AnalysingStore` wraps the store so that every
writer (agents' ``ingest_telemetry``, the local sampler, CloudWatch streaming) is analysed the same way.
"""

from telemetry.learning.live.analysing_store import AnalysingStore
from telemetry.learning.live.anomaly_watch import ANOMALY_EVENT, AnomalyWatch
from telemetry.learning.live.pattern_watch import ErrorPattern, PatternReport, PatternWatch

__all__ = ["ANOMALY_EVENT", "AnalysingStore", "AnomalyWatch", "ErrorPattern", "PatternReport", "PatternWatch"]
