"""Learning from telemetry: trends, degradations and error patterns turned into insights and ranked
opportunities (the engine), the streaming anomaly detector, the log-pattern miner with its header reader, and the
live analysis that runs both on every stored point and line.
"""
