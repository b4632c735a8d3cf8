"""Streaming anomaly detection for metric series: one configuration, online state per series.

``SeriesDetector`` scores one series point by point; ``AnomalyDetector`` keeps one per series key (bounded);
``detect_csv`` runs a ``timestamp,value`` CSV through a fresh detector and writes one JSON line per row.
"""

from telemetry.learning.anomaly.config import DetectorConfig
from telemetry.learning.anomaly.csvio import detect_csv, parse_timestamp
from telemetry.learning.anomaly.detector import Detection, SeriesDetector
from telemetry.learning.anomaly.registry import AnomalyDetector

__all__ = ["AnomalyDetector", "Detection", "DetectorConfig", "SeriesDetector", "detect_csv", "parse_timestamp"]
