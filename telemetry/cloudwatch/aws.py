"""boto3 clients, built lazily (boto3 is slow to import) and used only from worker threads."""

from __future__ import annotations

import threading
from typing import Any

from telemetry.cloudwatch.config import CloudWatchConfig


class AwsClients:
    """One boto3 client per service, shared by the worker threads (boto3 clients are thread-safe)."""

    def __init__(self, config: CloudWatchConfig) -> None:
        self._config = config
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()

    def client(self, service: str) -> Any:
        with self._lock:
            found = self._clients.get(service)
            if found is None:
                import boto3
                from botocore.config import Config

                session = boto3.session.Session(profile_name=self._config.profile, region_name=self._config.region)
                # Retries are ours (tenacity, transient errors only): botocore's own would multiply them. Its
                # "max_attempts" counts retries after the first try; "total_max_attempts" counts every try.
                name: Any = service  # a plain str; the stubs only type literal service names
                found = session.client(
                    name,
                    endpoint_url=self._config.endpoint_url,
                    config=Config(
                        retries={"total_max_attempts": 1, "mode": "standard"}, connect_timeout=5, read_timeout=30
                    ),
                )
                self._clients[service] = found
            return found
