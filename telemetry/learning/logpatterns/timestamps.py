"""The moment a log header's time fields name, from the general ways of writing a date and a clock time.

Nothing here is a particular program's format. A clock time is ``H:MM[:SS][.frac]`` (with ``,`` as the decimal mark
as well, as many European-locale loggers write it), optionally followed by a zone (``Z``, ``+hh:mm``, ``+hhmm``,
``UTC``/``GMT``) or AM/PM. A date is three numbers with ``-``, ``/`` or ``.`` between them, a month name with a day
(and maybe a year), ISO 8601's basic forms (``YYYYMMDD``, or ``YYMMDD`` before an ``HHMMSS``), or a year-less
``MM-DD``; a full date may be joined to a clock written with dots (``2026-03-04-05.06.07``). A lone number of 10 or
13 digits is a Unix time in seconds or milliseconds. Ambiguous field orders are read in ISO order (year, month, day)
when the first number could be a year, and as day/month when a number above 12 rules the other order out.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache

MONTHS = {
    m: i for i, m in enumerate(("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1)
}
WEEKDAYS = frozenset(("mon", "tue", "wed", "thu", "fri", "sat", "sun"))
_CLOCK = re.compile(
    r"(?<!\d)(?P<H>\d{1,2}):(?P<M>\d{2})(?::(?P<S>\d{2}))?(?:[.,](?P<frac>\d{1,9}))?(?![\d:])"
    r"(?:\s*(?P<ampm>[AaPp][Mm])\b)?(?:\s*(?P<tz>Z\b|[+-]\d{2}:?\d{2}\b|UTC\b|GMT\b))?"
)
_PART = re.compile(r"\d+|[A-Za-z]+")
_EPOCH = re.compile(r"(?P<int>\d{10}|\d{13})(?:\.(?P<frac>\d{1,9}))?")
_COMPACT_TIME = re.compile(r"(?P<H>\d{2})(?P<M>\d{2})(?P<S>\d{2})(?:[.,](?P<frac>\d{1,9}))?")
_JOINED = re.compile(r"(\d{4}[-/.]\d{1,2}[-/.]\d{1,2})[T_-](\d{1,2})\.(\d{2})\.(\d{2})(?:[.,](\d{1,9}))?")
_EARLIEST, _LATEST = 1970, 2200


def parse_timestamp(text: str, now: datetime | None = None) -> float | None:
    """Unix seconds for the date and time written in ``text`` (UTC unless it names a zone; the current year when
    it has none, or last year if that would be more than a day ahead); None when ``text`` names no moment."""
    text = text.strip().strip("[]()")
    if not text:
        return None
    epoch = _EPOCH.fullmatch(text)
    if epoch:
        seconds = int(epoch["int"]) / (1000.0 if len(epoch["int"]) == 13 else 1.0)
        return seconds + float("0." + epoch["frac"]) if epoch["frac"] else seconds
    clock = _CLOCK.search(text)
    if clock:
        date_text = text[: clock.start()] + " " + text[clock.end() :]
        hour, minute, second, frac, ampm, zone = clock.group("H", "M", "S", "frac", "ampm", "tz")
    elif joined := _JOINED.fullmatch(text):  # a full date joined to a clock written with dots
        date_text, hour, minute, second, frac = joined.groups()
        ampm = zone = None
    else:
        # ISO 8601 basic: "YYMMDD HHMMSS" or "YYYYMMDD HHMMSS", the time as the second number.
        parts = text.split()
        compact = _COMPACT_TIME.fullmatch(parts[1]) if len(parts) == 2 and parts[0].isdigit() else None
        if compact is None or len(parts[0]) not in (6, 8):
            return None
        date_text = parts[0]
        hour, minute, second, frac = compact.group("H", "M", "S", "frac")
        ampm = zone = None
    midnight = _midnight(date_text, (now or datetime.now(UTC)).date())
    h, m, sec = int(hour), int(minute), int(second or 0)
    if midnight is None or h > 23 or m > 59 or sec > 59:
        return None
    if ampm:
        h = h % 12 + (12 if ampm.lower() == "pm" else 0)
    fraction = int(frac) / 10 ** len(frac) if frac else 0.0
    return midnight + h * 3600 + m * 60 + sec + fraction - _offset(zone)


@lru_cache(maxsize=1024)  # a source repeats its dates: each is read once per day written (and day it is read on)
def _midnight(text: str, today: date) -> float | None:
    ymd = _date(text, today)
    try:
        return None if ymd is None else datetime(*ymd, tzinfo=UTC).timestamp()
    except ValueError:  # a day the month does not have
        return None


def _date(text: str, now: date) -> tuple[int, int, int] | None:
    month = None
    numbers: list[str] = []
    for part in _PART.findall(text):
        word = part[:3].lower()
        if part.isdigit():
            numbers.append(part)
        elif word in MONTHS and month is None:
            month = MONTHS[word]
        elif word not in WEEKDAYS and part.upper() not in ("T", "Z"):
            return None  # a word that is not part of a date: not a timestamp
    if month is not None:  # a month's name, a day and maybe a year, in any order
        years = [n for n in numbers if len(n) == 4]
        days = [n for n in numbers if len(n) <= 2]
        return _dated(int(years[0]) if years else None, month, int(days[0]), now) if days else None
    if len(numbers) == 1 and len(numbers[0]) in (6, 8):  # YYMMDD, YYYYMMDD
        n = numbers[0]
        return _dated(_year(n[:-4]), int(n[-4:-2]), int(n[-2:]), now)
    if len(numbers) == 2:  # MM-DD: ISO 8601's year-less order
        return _dated(None, int(numbers[0]), int(numbers[1]), now)
    return _numeric_date(numbers, "/" in text, now) if len(numbers) == 3 else None


def _numeric_date(numbers: list[str], slashed: bool, now: date) -> tuple[int, int, int] | None:
    a, b, c = numbers
    if len(a) == 4:  # YYYY-MM-DD
        return _dated(int(a), int(b), int(c), now)
    if len(c) == 4:
        first, second = int(a), int(b)
        if first > 12 or not slashed:  # DD/MM/YYYY, and the dotted and dashed day-first orders
            return _dated(int(c), second, first, now)
        return _dated(int(c), first, second, now)  # MM/DD/YYYY, the other common slashed order
    for y, m, d in ((a, b, c), (c, b, a), (c, a, b)):  # two digits each: ISO order first
        found = _dated(_year(y), int(m), int(d), now)
        if found is not None:
            return found
    return None


def _year(text: str) -> int:
    year = int(text)
    return year + 2000 if len(text) <= 2 else year


def _dated(year: int | None, month: int, day: int, now: date) -> tuple[int, int, int] | None:
    if not 1 <= month <= 12 or not 1 <= day <= 31:
        return None
    if year is None:
        year = now.year
        try:
            if date(year, month, day) > now + timedelta(days=1):
                year -= 1  # a year-less date "from the future" is from last year
        except ValueError:
            return None
    if not _EARLIEST <= year <= _LATEST:
        return None
    return year, month, day


def _offset(zone: str | None) -> int:
    if not zone or zone in ("Z", "UTC", "GMT"):
        return 0
    digits = zone[1:].replace(":", "")
    return (int(digits[:2]) * 60 + int(digits[2:])) * 60 * (1 if zone[0] == "+" else -1)
