"""Telemetry: the host and its GPUs (:mod:`.host`), threshold monitoring and its event timeline (:mod:`.monitoring`),
the telemetry store (:mod:`.store`) and the validation of what agents push (:mod:`.ingest`), learning from
telemetry (:mod:`.learning`: insights, the anomaly detector, the log-pattern miner, live analysis), the server's look
at its own tool calls (:mod:`.selfcheck`) and AWS CloudWatch (:mod:`.cloudwatch`). Never imports ``generators``.
"""
