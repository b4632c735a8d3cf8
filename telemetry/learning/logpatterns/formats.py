"""An explicit log format, for a source whose layout the operator knows.

For instance ``<Date> <Time> <Level> <Component>: <Content>``, in loghub's notation: each ``<Name>`` is a field,
``<Content>`` (exactly once) is the message, and the text between fields is literal, a run of spaces matching any run
of whitespace. A backslash before punctuation is dropped (``\\[<Time>\\]`` reads as ``[<Time>]``), so formats
written as loghub's regular expressions work too. Fields named like a time (Date, Time, Timestamp, Datetime, Day,
Month, Year) together give the timestamp; Level (or Severity, Loglevel) the level; Component (or Logger, Tag,
Program, Service, Source) the component. Other fields (Pid, Thread, Host...) are header text left out of the message.
Fields must be separated by some text, except a level fused to the date or time after it (``<Level><Date> <Time>``,
glog's and klog's ``I1205 10:15:30.123456``): the level is its letters, and a four-digit date is month and day.
"""

from __future__ import annotations

import re
from functools import lru_cache

from telemetry.learning.logpatterns.fields import is_month_day, iso_month_day, level_of
from telemetry.learning.logpatterns.inference import ParsedLine
from telemetry.learning.logpatterns.timestamps import parse_timestamp

MAX_FORMAT_CHARS = 500
_FIELD = re.compile(r"<([A-Za-z_][A-Za-z0-9_]{0,40})>")
_TIME_NAMES = frozenset(("date", "time", "timestamp", "datetime", "day", "month", "year"))
_LEVEL_NAMES = frozenset(("level", "severity", "loglevel"))
_COMPONENT_NAMES = frozenset(("component", "logger", "tag", "program", "service", "source"))


class LogFormat:
    """A compiled format; :meth:`split` gives a line's fields, or None when the line does not fit."""

    def __init__(self, spec: str) -> None:
        """Raises ValueError, saying what is wrong, for a format that cannot be used."""
        if len(spec) > MAX_FORMAT_CHARS:
            raise ValueError(f"a log format is at most {MAX_FORMAT_CHARS} characters")
        names = _FIELD.findall(spec)
        if names.count("Content") != 1:
            raise ValueError(
                "a log format needs <Content> exactly once, where the message starts, e.g. "
                "'<Date> <Time> <Level> <Component>: <Content>'"
            )
        if len({n.lower() for n in names}) != len(names):
            raise ValueError("a log format names each field once")
        parts = [p if i % 2 else re.sub(r"\\([^\w\s])", r"\1", p) for i, p in enumerate(_FIELD.split(spec))]
        touching = [i for i in range(2, len(parts) - 1, 2) if not parts[i]]
        adjacent = next((i for i in touching if not _fused(parts[i - 1], parts[i + 1])), None)
        if adjacent is not None:
            # Where two fields touch, a line could be cut between them anywhere: nothing says where one ends, and a
            # pattern that tries every cut takes time growing with a power of the line's length (a pushed format of
            # five touching fields held a CPU for minutes on one 400-character line).
            raise ValueError(
                f"fields <{parts[adjacent - 1]}> and <{parts[adjacent + 1]}> have nothing between them: put the text "
                "that separates them in the format (a space, a colon, a bracket)"
            )
        pattern = []
        for i, part in enumerate(parts):
            if i % 2 == 0:
                pattern.append(r"\s+".join(re.escape(piece) for piece in re.split(r"\s+", part)))
                continue
            following = parts[i + 1]
            if part == "Content" or (i + 1 == len(parts) - 1 and not following):
                pattern.append(f"(?P<{part}>.*)")
            elif not following:  # a level fused to the date after it: the level is its letters
                pattern.append(f"(?P<{part}>[A-Za-z]++)")
            else:
                # Up to the next literal text, never backtracking: a line that does not fit fails in linear time.
                stop = r"\S" if following[0].isspace() else f"[^{re.escape(following[0])}]"
                pattern.append(f"(?P<{part}>{stop}*+)")
        self.spec = spec
        self._regex = re.compile("".join(pattern), re.DOTALL)
        # The date written right after a fused level (glog's I1205): four digits there are month and day.
        self._fused_date = next((parts[i + 1] for i in touching), None)  # every touching pair left is fused
        self._times = [n for n in names if n.lower() in _TIME_NAMES]
        self._level = next((n for n in names if n.lower() in _LEVEL_NAMES), None)
        self._component = next((n for n in names if n.lower() in _COMPONENT_NAMES), None)

    def split(self, line: str) -> ParsedLine | None:
        found = self._regex.fullmatch(line)
        if found is None:
            return None
        stamp = parse_timestamp(" ".join(self._moment_part(n, found[n]) for n in self._times)) if self._times else None
        level = component = None
        if self._level is not None:
            level = level_of(found[self._level]) or found[self._level].strip().upper() or None
        if self._component is not None:
            component = found[self._component].strip() or None
        return ParsedLine(stamp, level, component, found["Content"])

    def _moment_part(self, name: str, text: str) -> str:
        """A time field's text; the date fused to a level, when four digits, is month and day (glog's ``1205``)."""
        return iso_month_day(text) if name == self._fused_date and is_month_day(text) else text

    def __repr__(self) -> str:
        return f"LogFormat({self.spec!r})"


def _fused(left: str, right: str) -> bool:
    """Whether two touching fields can still be told apart: a level (letters) fused to the date or time after it
    (digits), as glog and klog write ``I1205 10:15:30.123456``. Any other pair could be cut anywhere."""
    return left.lower() in _LEVEL_NAMES and right.lower() in _TIME_NAMES


@lru_cache(maxsize=256)
def compiled_format(spec: str) -> LogFormat:
    """The :class:`LogFormat` of ``spec``, compiled once: every record of a push may carry the same format, and it
    is checked at ingest and used again by its source. Raises ValueError like the constructor (not cached)."""
    return LogFormat(spec)
