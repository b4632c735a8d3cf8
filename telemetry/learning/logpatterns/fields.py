"""The first fields of a raw log line, each with the kind of value it holds.

A header is a handful of fields before the message, each of a kind every logging convention shares: a timestamp
(dates, clock times, month and weekday names, zones), a number (a process or thread id), a severity word, an
address, a bracketed field (a thread, a logger, a bracketed time or level), a name ended by ``:`` (the component or
``process[pid]:`` before the message, or a ``file:line]`` that closes a header), a separator of punctuation only
(``-``, ``|``), a severity letter fused to a month and day (``I1205``, as glog and klog write it), or another word (a
host, a padded column). A bracketed field may hold spaces and nested brackets and counts as one field. Only the start
of a line is looked at: :data:`MAX_FIELDS` fields within :data:`MAX_HEADER_CHARS` characters.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from telemetry.learning.logpatterns.timestamps import MONTHS, WEEKDAYS

MAX_FIELDS = 12
MAX_HEADER_CHARS = 400
_MAX_TOKEN = 120  # a longer word is message text, not a header field

# Kinds of field. TIME, LEVEL, COMPONENT, BRACKET and SEPARATOR may end a header; WORD only when padded. FUSED is
# a severity letter fused to a month and day (glog's and klog's ``I1205``): a severity and the start of a moment.
TIME, NUMBER, LEVEL, LETTER, ADDRESS, BRACKET, COMPONENT, SEPARATOR, WORD, FUSED = "TNLlABCSWG"

# Severity words of syslog (RFC 5424), log4j/logback, Python logging, Go and .NET loggers.
LEVEL_WORDS = {
    "TRACE": "TRACE",
    "DEBUG": "DEBUG",
    "DBG": "DEBUG",
    "INFO": "INFO",
    "INF": "INFO",
    "INFORMATION": "INFO",
    "NOTICE": "NOTICE",
    "WARN": "WARN",
    "WARNING": "WARN",
    "WRN": "WARN",
    "ERROR": "ERROR",
    "ERR": "ERROR",
    "SEVERE": "ERROR",
    "FATAL": "FATAL",
    "CRITICAL": "CRITICAL",
    "CRIT": "CRITICAL",
    "ALERT": "ALERT",
    "EMERG": "EMERG",
    "PANIC": "FATAL",
    "VERBOSE": "TRACE",
}
# One-letter severities (logcat's and glog's I/W/E/F): ambiguous alone, so never the last header field.
LEVEL_LETTERS = {"V": "TRACE", "D": "DEBUG", "I": "INFO", "W": "WARN", "E": "ERROR", "F": "FATAL"}
BRACKETS = {"[": "]", "(": ")", "<": ">", "{": "}"}
_TRIM = ",;"
_DATE = (
    r"\d{4}[-/.]\d{1,2}[-/.]\d{1,2}(?:[T_:-].*)?"  # year first (ISO 8601), with its time when joined to it
    r"|\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}"  # day or month first
    r"|\d{1,2}-\d{1,2}"  # ISO 8601's year-less month-day
    r"|\d{1,2}/[A-Za-z]{3}/\d{4}(?::.*)?"  # day/Mon/year, the Common Log Format's date
)
_CLOCK = r"\d{1,2}:\d{2}(?::\d{2})?(?:[.,]\d{1,9})?(?:Z|[+-]\d{2}:?\d{2})?"
# A field starting with a digit or sign, in one pass: a moment's part, else a number, else an address.
_NUMERIC = re.compile(
    rf"(?P<T>{_DATE}|{_CLOCK}|[+-]\d{{2}}:?\d{{2}})|(?P<N>[+-]?\d+(?:\.\d+)?)"
    r"|(?P<A>\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?|[0-9a-fA-F]{0,4}(?::[0-9a-fA-F]{0,4}){2,7})"
)
_NAME_CHARS = re.compile(r"[A-Za-z]")
_ALPHA_ADDRESS = re.compile(r"[0-9a-fA-F]{0,4}(?::[0-9a-fA-F]{0,4}){2,7}")
_ZONES = frozenset(("Z", "UTC", "GMT"))
_WORD = re.compile(r"[^ \t]+")
_GAP = re.compile(r"[ \t]*")
_DIGITS_AS_ZERO = str.maketrans("123456789", "000000000")
# One field as split_fields reads it: a bracketed group (one level of nesting) and what sticks to it up to the next
# opening bracket (adjacent groups, "[time][level]", are fields of their own), or a word.
# TOKENIZERS[n] matches the first n fields, each as (text)(following whitespace), or fails (deeper nesting, fewer).
_ONE = "".join(
    rf"\{o}(?:[^\{o}\{c}]|\{o}[^\{o}\{c}]*\{c})*\{c}[^ \t\[(<{{]*|"
    for o, c in (("[", "]"), ("(", ")"), ("<", ">"), ("{", "}"))
)
TOKENIZERS = {
    n: re.compile(r"[ \t]*" + rf"(?>({_ONE}[^ \t\[(<{{][^ \t]*)([ \t]*))" * n) for n in range(1, MAX_FIELDS + 1)
}
_STUCK = re.compile(r"[^ \t\[(<{]*")
_FLAT = {o: re.compile(rf"\{o}[^\{o}\{c}]*\{c}[^ \t\[(<{{]*") for o, c in BRACKETS.items()}
_CALENDAR_WORDS = frozenset(
    (
        *MONTHS,
        *WEEKDAYS,
        "am",
        "pm",
        *("january", "february", "march", "april", "june", "july", "august", "september", "october", "november"),
        *("december", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"),
    )
)


class Field(NamedTuple):
    """One header field: its kind and text, where it starts and ends, where the next field starts, and whether a
    run of spaces or a tab (a fixed-width column's padding) follows it."""

    kind: str
    text: str
    start: int
    end: int
    next: int
    padded: bool


def shape_key(text: str) -> str:
    """``text`` with every digit 0: a field's kind depends on where it has digits and how many, never on their
    values, so every timestamp, pid and address of one layout has the same key."""
    return text.translate(_DIGITS_AS_ZERO)


def split_fields(line: str, limit: int = MAX_FIELDS) -> list[Field]:
    """The first ``limit`` fields of ``line`` (leading whitespace skipped), within :data:`MAX_HEADER_CHARS`."""
    bound = min(len(line), MAX_HEADER_CHARS)
    if 0 < limit <= MAX_FIELDS:
        found = TOKENIZERS[limit].match(line, 0, bound)
        if found is not None:  # the common case, in one call: no bracket nested deeper than one level
            return [
                Field(
                    kind_of(found[i]),
                    found[i],
                    found.start(i),
                    found.end(i),
                    found.end(i + 1),
                    found.end(i + 1) - found.end(i) >= 2 or "\t" in found[i + 1],
                )
                for i in range(1, 2 * limit, 2)
            ]
    fields: list[Field] = []
    pos = _GAP.match(line).end()  # type: ignore[union-attr]  # matches the empty string
    while pos < bound and len(fields) < limit:
        end = _token_end(line, pos, bound)
        gap = _GAP.match(line, end).end()  # type: ignore[union-attr]
        text = line[pos:end]
        fields.append(Field(kind_of(text), text, pos, end, gap, gap - end >= 2 or "\t" in line[end:gap]))
        pos = gap
    return fields


def _token_end(line: str, pos: int, bound: int) -> int:
    opener = line[pos]
    close = BRACKETS.get(opener)
    if close is not None:  # a bracketed field, spaces and nested brackets included, then what sticks to it
        flat = _FLAT[opener].match(line, pos, bound)
        if flat:
            return flat.end()
        depth = 0
        for i in range(pos, bound):
            char = line[i]
            if char == opener:
                depth += 1
            elif char == close:
                depth -= 1
                if depth == 0:
                    return _STUCK.match(line, i + 1, bound).end()  # type: ignore[union-attr]  # may be empty
    return _WORD.match(line, pos, bound).end()  # type: ignore[union-attr]  # line[pos] is not a space


def kind_of(text: str) -> str:
    """The kind of one header field's text."""
    core = text.rstrip(_TRIM)
    if not core:
        return SEPARATOR
    first = core[0]
    if first in BRACKETS and core.rfind(BRACKETS[first]) > 0:
        return _bracket_kind(core[1 : core.rfind(BRACKETS[first])].strip())
    if len(core) > _MAX_TOKEN:
        return WORD
    if first.isdigit() or first in "+-":
        numeric = _NUMERIC.fullmatch(core)
        if numeric:
            return numeric.lastgroup  # type: ignore[return-value]  # every alternative is a named group
    else:
        bare = core.rstrip(":")
        if bare.upper() in LEVEL_WORDS:
            return LEVEL
        if len(bare) == 1 and bare in LEVEL_LETTERS:
            return LETTER
        if len(core) == 5 and core[0] in LEVEL_LETTERS and is_month_day(core[1:]):
            return FUSED
        if core.rstrip(".,").lower() in _CALENDAR_WORDS or core in _ZONES:
            return TIME
        if _ALPHA_ADDRESS.fullmatch(core):
            return ADDRESS
    if not _NAME_CHARS.search(core):
        return WORD if any(c.isalnum() for c in core) else SEPARATOR
    # "name:" before the message, or "file.go:42]": a closing bracket never opened here closes the header
    return COMPONENT if core.endswith(":") or (core.endswith("]") and "[" not in core) else WORD


def is_month_day(digits: str) -> bool:
    """Whether four ASCII digits are a month and a day (``str.isdigit`` alone also takes superscripts)."""
    return digits.isascii() and digits.isdigit() and 1 <= int(digits[:2]) <= 12 and 1 <= int(digits[2:]) <= 31


def unfuse(text: str) -> str:
    """A moment's text that starts with a :data:`FUSED` field, without its severity letter and with its month and
    day written as ISO 8601's year-less ``MM-DD``."""
    return iso_month_day(text[1:5]) + text[5:]


def iso_month_day(digits: str) -> str:
    """Four digits MMDD written as ISO 8601's year-less ``MM-DD``, which :func:`parse_timestamp` reads."""
    return f"{digits[:2]}-{digits[2:]}"


def _bracket_kind(inner: str) -> str:
    """A bracketed field, as long as the header allows (a thread may be named by its task): a severity, a moment,
    an id, or a thread or logger name."""
    if level_of(inner):
        return LEVEL
    parts = inner.split()
    if parts and all(_is_time(p) or p.isdigit() for p in parts) and any(map(_is_time, parts)):
        return TIME  # a bracketed date and time ("[Mon Dec 01 10:00:00 2025]")
    return NUMBER if inner.isdigit() else BRACKET


def _is_time(text: str) -> bool:
    return kind_of(text) == TIME


def level_of(text: str) -> str | None:
    """The severity a header field names (``ERROR``, ``[warn]``, ``Info,``, ``E``), normalised; else None."""
    word = text.strip("[]()<>:,; ")
    return LEVEL_WORDS.get(word.upper()) or (LEVEL_LETTERS.get(word) if len(word) == 1 else None)
