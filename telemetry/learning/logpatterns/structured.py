"""Structured log lines: a JSON object or logfmt pairs per line, with the message, level, logger and time as fields.

Structured logging libraries agree on a handful of field names (``message`` in ECS, log4j, logback, zerolog and
python-json-logger; ``msg`` in pino, bunyan, zap, logrus and Go's slog; ``event`` in structlog; ``log`` in Docker's
and Fluent Bit's records; ``@m`` in Serilog's compact JSON, ...). The message field is what varies like a raw line's
message; the rest of the object is the header. Only the object's own string fields count, and the level may be a
word or a number on one of the two common numeric scales. A logfmt line (``key=value`` pairs, a value quoted when
it holds spaces: Go's slog text handler, logrus, Heroku's router) is read the same way when every word of it is a
pair and one of them is the message.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

# The first key found wins, in this order; keys are compared case-insensitively.
MESSAGE_KEYS = ("message", "msg", "@message", "@m", "short_message", "log", "event", "text", "@mt")
LEVEL_KEYS = ("level", "severity", "lvl", "levelname", "loglevel", "log_level", "log.level", "@l", "severity_text")
COMPONENT_KEYS = ("component", "logger", "logger_name", "loggername", "log.logger", "service", "service.name", "name")
TIME_KEYS = ("timestamp", "@timestamp", "time", "ts", "@t", "datetime", "date")
# Numeric levels: syslog's severities 0-7 (GELF) and pino's and bunyan's steps of ten (10 trace - 60 fatal).
_SYSLOG = ("EMERG", "ALERT", "CRITICAL", "ERROR", "WARN", "NOTICE", "INFO", "DEBUG")
_TENS = {10: "TRACE", 20: "DEBUG", 30: "INFO", 40: "WARN", 50: "ERROR", 60: "FATAL"}
_LOGFMT_START = re.compile(r"[A-Za-z_@][\w.@/-]{0,63}=")
_LOGFMT_PAIR = re.compile(r'([A-Za-z_@][\w.@/-]{0,63})=("(?:[^"\\]|\\.)*"|[^\s"]*)(?:\s+|$)')
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_MAX_PAIRS = 256  # a record of more fields is read as text


@dataclass(frozen=True, slots=True)
class StructuredFields:
    """What a JSON log line says about itself; ``level`` is the word as written (or named from a number)."""

    message: str
    level: str | None
    component: str | None
    timestamp: float | None


def structured_fields(line: str) -> StructuredFields | None:
    """The fields of ``line`` when it is a JSON object or logfmt pairs with a message; None for anything else
    (cheaply, for a line neither in braces nor starting with ``key=``)."""
    first = line[:1]
    if first != "{" and not (first.isspace() and line.lstrip().startswith("{")):
        return _logfmt(line) if _LOGFMT_START.match(line) else None  # commonly decided on the first characters
    text = line.strip()
    if not text.endswith("}"):
        return None
    try:
        parsed = json.loads(text)
    except (ValueError, RecursionError):  # not JSON after all, or nested deeper than the parser goes
        return None
    if not isinstance(parsed, dict):
        return None
    fields = {str(k).lower(): v for k, v in parsed.items()}
    message = _text(fields, MESSAGE_KEYS)
    if message is None:
        # No message field: the record is its fields. "key=value" pairs let the miner see its shape (which keys),
        # with the values masked as in any key=value line.
        message = " ".join(f"{k}={v if isinstance(v, str) else _compact(v)}" for k, v in parsed.items())
    return StructuredFields(message, _level(fields), _text(fields, COMPONENT_KEYS), _time(fields))


def _logfmt(line: str) -> StructuredFields | None:
    fields: dict[str, Any] = {}
    pos, size = 0, len(line.rstrip())
    while pos < size:
        if len(fields) >= _MAX_PAIRS:
            return None
        pair = _LOGFMT_PAIR.match(line, pos)
        if pair is None:
            return None  # a word that is not a pair: a plain line that happens to start with key=value
        key, value = pair.groups()
        if value.startswith('"'):
            try:
                value = json.loads(value)
            except ValueError:
                return None
        fields[key.lower()] = value
        pos = pair.end()
    message = _text(fields, MESSAGE_KEYS)
    if message is None or len(fields) < 2:
        return None  # pairs without a message: the miner reads them as key=value text
    return StructuredFields(message, _level(fields), _text(fields, COMPONENT_KEYS), _time(fields))


def _lookup(fields: dict[str, Any], key: str) -> Any:
    """``fields[key]``, or for a dotted key ``log.level`` also the nested ``{"log": {"level": ...}}`` (ECS)."""
    if key in fields:
        return fields[key]
    outer, _, inner = key.partition(".")
    nested = fields.get(outer) if inner else None
    if isinstance(nested, dict):
        return next((v for k, v in nested.items() if str(k).lower() == inner), None)
    return None


def _text(fields: dict[str, Any], keys: tuple[str, ...]) -> str | None:
    for key in keys:
        value = _lookup(fields, key)
        if isinstance(value, str) and value.strip():
            return value
    return None


def _level(fields: dict[str, Any]) -> str | None:
    for key in LEVEL_KEYS:
        value = _lookup(fields, key)
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value)  # a number written as a string
        if isinstance(value, int) and not isinstance(value, bool):
            return _SYSLOG[value] if 0 <= value < len(_SYSLOG) else _TENS.get(value)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def _time(fields: dict[str, Any]) -> float | None:
    for key in TIME_KEYS:
        value = _lookup(fields, key)
        if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
            value = float(value)  # a number written as text (logfmt has no other way)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value < 1e20:
            # Epoch seconds, milliseconds, microseconds or nanoseconds, told apart by size (now is ~1.7e9 s).
            seconds = float(value)
            while seconds > 1e11:
                seconds /= 1000.0
            return seconds
        if isinstance(value, str):
            try:
                moment = datetime.fromisoformat(value.strip())
            except ValueError:
                continue
            return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()  # no zone: UTC, as headers
    return None


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
