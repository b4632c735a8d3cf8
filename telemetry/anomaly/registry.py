"""Many series: one SeriesDetector per key, bounded by least-recently-updated eviction."""
AnomalyDetector = None
