"""Telemetry storage: the records and the store protocol, the SQLite store (WAL) and its database guard, and
retention. What agents push is validated before it gets here (:mod:`telemetry.ingest`).
"""
