"""The server looking at itself: every tool call recorded, its latency and error figures, anomalies and
biases in them, and the suggestions read from those.
"""
