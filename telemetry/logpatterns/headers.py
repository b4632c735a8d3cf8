"""Recognise the header of a raw log line (timestamp, pid, level, component) and split it from the message.

Conservative on purpose: a header is only taken when the line starts with a timestamp of a common shape, so a
message without a header (for instance ``ERROR IN CONTACTING RM.``) passes through unchanged. A structured line (a JSON
object, alone or after a header) is split by its fields instead (:mod:`~telemetry.logpatterns.structured`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from telemetry.logpatterns.structured import StructuredFields, structured_fields

_MONTHS = {
    m: i for i, m in enumerate(("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1)
}
_T = r"(?P<H>\d{1,2}):?(?P<M>\d{2}):?(?P<S>\d{2})(?:[.,](?P<frac>\d+))?"
_TIMESTAMPS = (
    # 2026-11-25T10:00:00.123Z, 2015-10-18 18:01:47,978, 2016-09-28 04:30:30 (with an optional zone)
    re.compile(r"(?P<y>\d{4})-(?P<mo>\d{2})-(?P<d>\d{2})[T ]" + _T.replace(":?", ":") + r"(?P<tz>Z|[+-]\d{2}:?\d{2})?"),
    # 17/06/09 20:10:40 (yy/mm/dd) and 2017/06/09 20:10:40
    re.compile(r"(?P<y>\d{2}|\d{4})/(?P<mo>\d{2})/(?P<d>\d{2}) " + _T.replace(":?", ":")),
    # 081109 203615 (yymmdd hhmmss)
    re.compile(r"(?P<y>\d{2})(?P<mo>\d{2})(?P<d>\d{2}) (?P<H>\d{2})(?P<M>\d{2})(?P<S>\d{2})(?= )"),
    # [Sun Dec 04 04:47:44 2005]
    re.compile(r"\[[A-Z][a-z]{2} (?P<mon>[A-Z][a-z]{2}) +(?P<d>\d{1,2}) " + _T.replace(":?", ":") + r" (?P<y>\d{4})\]"),
    # Dec 10 06:55:46 (syslog)
    re.compile(r"(?P<mon>[A-Z][a-z]{2}) +(?P<d>\d{1,2}) " + _T.replace(":?", ":")),
    # 03-17 16:13:38.811 (logcat)
    re.compile(r"(?P<mo>\d{2})-(?P<d>\d{2}) " + _T.replace(":?", ":")),
)
_LEVEL_WORDS = {
    "TRACE": "TRACE",
    "DEBUG": "DEBUG",
    "INFO": "INFO",
    "NOTICE": "NOTICE",
    "WARN": "WARN",
    "WARNING": "WARN",
    "ERROR": "ERROR",
    "ERR": "ERROR",
    "SEVERE": "ERROR",
    "FATAL": "FATAL",
    "CRITICAL": "CRITICAL",
    "CRIT": "CRITICAL",
    "ALERT": "ALERT",
    "EMERG": "EMERG",
    "INFORMATION": "INFO",  # .NET and Serilog's names, only ever in a structured line's level field (too long here)
    "VERBOSE": "TRACE",
}
_LEVEL_LETTERS = {"V": "TRACE", "D": "DEBUG", "I": "INFO", "W": "WARN", "E": "ERROR", "F": "FATAL", "A": "FATAL"}
_SEPARATOR = re.compile(r"[\s,|\-]*")
_PIDS = re.compile(r"(?:\d+\s+){1,2}(?=\S)")
# syslog: "host process[pid]: message"
_SYSLOG = re.compile(r"(?P<host>[\w.\-]+) (?P<comp>[\w.\-/]+)\[\d+\]: ")
_LEVEL = re.compile(r"\[?(?P<level>[A-Za-z]{3,8}|[VDIWEFA])\]?(?=[\s:]|$)[\s:]*")
_BRACKETED = re.compile(r"\[(?P<inner>(?:[^\[\]]|\[[^\[\]]*\])*)\][\s\-]*")
_COMPONENT = re.compile(r"(?P<comp>[A-Za-z_$][\w$.\-@/]*)(?::\s+|:$|\s{2,})")


@dataclass(frozen=True, slots=True)
class ParsedLine:
    """A raw log line split into its header fields (None when absent) and the message content."""

    timestamp: float | None
    level: str | None
    component: str | None
    message: str


def parse_line(raw: str) -> ParsedLine:
    """Split ``raw`` into header fields and message; a line without a recognised timestamp is all message, unless
    it is a JSON object: then its message field is the message and its other fields the header."""
    line = raw.rstrip("\r\n")
    structured = structured_fields(line)
    if structured is not None:
        return _from_structured(structured, None)
    header = _parse_header(line)
    if header.timestamp is not None and header.message.startswith("{"):
        structured = structured_fields(header.message)  # "2026-11-25T10:00:00Z INFO {...}": a header, then JSON
        if structured is not None:
            return _from_structured(structured, header)
    return header


def _parse_header(line: str) -> ParsedLine:
    for pattern in _TIMESTAMPS:
        found = pattern.match(line)
        if found:
            break
    else:
        return ParsedLine(None, None, None, line)
    rest = line[found.end() :]
    rest = rest[_SEPARATOR.match(rest).end() :]  # type: ignore[union-attr]  # the pattern matches the empty string
    pids = _PIDS.match(rest)
    if pids:
        rest = rest[pids.end() :]
    level, component, message = _fields(rest)
    return ParsedLine(_epoch(found), level, component, message.lstrip())


def _from_structured(fields: StructuredFields, outer: ParsedLine | None) -> ParsedLine:
    """A structured line's fields, completed by its outer header (if any) and by a header inside its message (a
    raw line wrapped in JSON by a log shipper: Docker's ``{"log": "2026-11-25 10:00:00 ERROR ...", ...}``)."""
    inner = _parse_header(fields.message.rstrip("\r\n"))
    headers = [h for h in (outer, inner) if h is not None]
    level = _LEVEL_WORDS.get(fields.level.upper(), fields.level.upper()) if fields.level else None
    return ParsedLine(
        fields.timestamp
        if fields.timestamp is not None
        else next((h.timestamp for h in headers if h.timestamp is not None), None),
        level or next((h.level for h in headers if h.level), None),
        fields.component or next((h.component for h in headers if h.component), None),
        inner.message,
    )


def _fields(rest: str) -> tuple[str | None, str | None, str]:
    """(level, component, message) from what follows the timestamp and pids."""
    level, rest = _level(rest)
    if level is None:
        syslog = _SYSLOG.match(rest)
        if syslog:  # "host process[pid]: message"
            return None, syslog["comp"], rest[syslog.end() :]
    bracket = _BRACKETED.match(rest)
    if bracket and level is None:
        level, after = _level(rest[bracket.end() :])
        if level is not None:  # "[thread] LEVEL ..."
            rest, bracket = after, None
    if bracket:
        after = rest[bracket.end() :]
        inner = bracket["inner"]
        if bracket.group().rstrip().endswith("-") and ":" in inner:  # "[thread:Component@line] - message"
            return level, inner.rsplit(":", 1)[1].split("@", 1)[0] or None, after
        found = _COMPONENT.match(after)
        if found:  # "[thread] org.example.Component: message"
            return level, found["comp"], after[found.end() :]
        # Otherwise the bracket belongs to the message ("[client 10.0.0.1] File does not exist").
    if level is not None:
        found = _COMPONENT.match(rest)
        if found:
            return level, found["comp"], rest[found.end() :]
    return level, None, rest


def _level(text: str) -> tuple[str | None, str]:
    found = _LEVEL.match(text)
    if not found:
        return None, text
    word = found["level"]
    level = _LEVEL_LETTERS.get(word) if len(word) == 1 else _LEVEL_WORDS.get(word.upper())
    if level is None:
        return None, text
    return level, text[found.end() :]


def _epoch(found: re.Match[str]) -> float | None:
    """Seconds since the epoch for a matched timestamp (UTC unless it names a zone; this year if it has none)."""
    groups = found.groupdict()
    try:
        year = int(groups.get("y") or datetime.now(UTC).year)
        if year < 100:
            year += 2000
        month = int(groups["mo"]) if groups.get("mo") else _MONTHS[groups["mon"].lower()]
        frac = groups.get("frac") or "0"
        moment = datetime(
            year,
            month,
            int(groups["d"]),
            int(groups["H"]),
            int(groups["M"]),
            int(groups["S"]),
            int(frac[:6].ljust(6, "0")),
            tzinfo=UTC,
        )
        if not groups.get("y") and moment > datetime.now(UTC) + timedelta(days=1):
            moment = moment.replace(year=moment.year - 1)  # a year-less stamp "from the future" is from last year
    except (KeyError, ValueError):
        return None
    zone = groups.get("tz")
    offset = 0
    if zone and zone != "Z":
        digits = zone[1:].replace(":", "")
        offset = (int(digits[:2]) * 60 + int(digits[2:])) * 60 * (1 if zone[0] == "+" else -1)
    return moment.timestamp() - offset
