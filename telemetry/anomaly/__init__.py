"""Streaming anomaly detection for metric series (one configuration, online state per series)."""

from telemetry.anomaly.detector import DetectorConfig, Detection, SeriesDetector
from telemetry.anomaly.registry import AnomalyDetector
from telemetry.anomaly.csvio import _parse_timestamp, detect_csv

__all__ = ["AnomalyDetector", "Detection", "DetectorConfig", "SeriesDetector", "detect_csv"]
