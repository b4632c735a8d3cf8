"""Logging to stderr only: under stdio, stdout carries the protocol and nothing else."""

from __future__ import annotations

import logging
import re
import sys

_SECRET_PATTERNS = (
    re.compile(r"(?i)(authorization:\s*bearer\s+)[^\s'\"]+"),
    re.compile(r"(?i)((?:api[_-]?key|token|secret|password)\s*[=:]\s*)[^\s,'\"]+"),
)


class RedactingFilter(logging.Filter):
    """Masks bearer tokens and ``key=value`` secrets, and any configured secret value, in log records."""

    def __init__(self, secrets: tuple[str, ...] = ()) -> None:
        super().__init__()
        self._secrets = tuple(s for s in secrets if len(s) >= 4)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = message
        for secret in self._secrets:
            redacted = redacted.replace(secret, "***")
        for pattern in _SECRET_PATTERNS:
            redacted = pattern.sub(r"\1***", redacted)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


def configure_logging(level: str, secrets: tuple[str, ...] = ()) -> None:
    """Send every log record to stderr at ``level``, with secrets masked. Safe to call more than once."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_self_building", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler._self_building = True  # type: ignore[attr-defined]
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter(secrets))
    root.addHandler(handler)
    root.setLevel(level)
    # Chatty libraries stay at WARNING unless we debug.
    for name in ("httpx2", "httpcore", "uvicorn.access", "mcp.server.lowlevel.server", "botocore", "boto3"):
        logging.getLogger(name).setLevel(logging.DEBUG if level == "DEBUG" else logging.WARNING)
