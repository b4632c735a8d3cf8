"""Token classes: which words of a log message are values by their shape alone.

A message is split at whitespace; each word keeps the punctuation that wraps it (brackets, quotes, a trailing comma
or colon belong to the sentence, not to the value), and its core becomes ``<*>`` whole when its shape is a value's:

- a number in any form: integers, decimals, signed, with a unit glued on (``15ms``), or as a separate part of a
  compound word: IPs, ``host:port``, dates, times, versions, ids such as ``job_12_0004`` (a part made of digits is a
  count or an id, never a name);
- hex: ``0x``-prefixed (it starts with a digit), or eight or more hex digits in one case (hashes, addresses, masks);
- a generated identifier: letters and digits interleaved more than once (a name puts its number in one place,
  ``utf8``, ``log4j``; random ids alternate);
- a path: it starts at a root (``/``, ``\\``, ``~``, a drive ``C:``) or has two separators; three or more names
  joined by dots (``a.b.c``: a module, class, logger or host name) are a path in a namespace;
- a URL: the scheme stays, the rest is the value (``https://<*>``);
- a host name under a common top-level domain;
- a quoted text holding spaces (free text; a quoted single word may be a name and is judged like any word).

A month or weekday name beside a value is part of a written-out date and a value too.
``key=value`` and ``key:value`` keep the key and judge the value alone. A magnitude unit after a number (``9.2 KB``)
joins the value because human-readable formatting chooses it from the value; a fixed unit (``ms``, ``bytes``) was
written by the code and stays a word. Words with no value shape stay words: the miner decides from the values seen
at a position whether they are variables (:mod:`~telemetry.learning.logpatterns.miner`).
"""

from __future__ import annotations

import re

WILDCARD = "<*>"

# Punctuation that wraps a value in prose: it stays around the <*>.
OPEN = "([{<'\"#@"
CLOSE = ")]}>'\",;:.!?"
# Possessive runs, the first free of blanks: one way to match, so a quote never closed costs one scan, not one per
# blank after it (a line of one quote and 5,000 blanks took 0.3 s).
_QUOTED_TEXT = re.compile(r"""(?P<q>["'])[^"'\s]*+\s[^"']*+(?P=q)""")
_URL = re.compile(r"[A-Za-z][\w+.\-]*://")
_KEY = re.compile(r"[A-Za-z_][A-Za-z_.\-]*")  # a name: a key holding digits is more likely a value (fe80::1)
# Parts of a compound word: runs of letters and digits between separators.
_PART = re.compile(r"[A-Za-z0-9]+")
_NUMBERISH = re.compile(r"\d")
_DIGIT_RUNS = re.compile(r"\d+")
# Three or more names joined by dots, none empty: a.b.c (an abbreviation's dots end in a dot and do not match).
_DOTTED_NAME = re.compile(r"[A-Za-z_$][\w$\-]*(?:\.[A-Za-z_$][\w$\-]*){2,}")
_HEX = re.compile(r"[0-9a-f]{8,}|[0-9A-F]{8,}")
_TLDS = r"(?:com|net|org|edu|gov|mil|io|info|biz|local|localdomain|internal|lan|arpa)"
_HOST = re.compile(r"(?:[A-Za-z0-9\-]+\.)+" + _TLDS + r"(?:\.[A-Za-z]{2})?", re.IGNORECASE)
# Month and weekday names and their usual abbreviations.
_CALENDAR_NAMES = (
    "jan feb mar apr may jun jul aug sep sept oct nov dec january february march april june july august september "
    "october november december mon tue tues wed thu thur thurs fri sat sun monday tuesday wednesday thursday friday "
    "saturday sunday"
)
_CALENDAR = frozenset(_CALENDAR_NAMES.split())
# Inside a word, a comma, semicolon, bar or opening bracket after a character starts another field.
_FIELD_SEPARATORS = frozenset(",;([{|")
_FIELD_BREAK = re.compile(r".[,;(\[{|].")
_FIELD_SPLIT = re.compile(r"([,;(\[{|])")
# Units that formatting picks from the magnitude (1023 B, then 1.0 KB): part of the value, not a word of the event.
_MAGNITUDE_UNIT = re.compile(r"[KMGTPE]i?B|B")


def _value_part(part: str) -> bool:
    """Whether one letters-and-digits part of a word is a value: a number (maybe with a unit), hex or a generated id."""
    if part[0].isdigit():
        return True  # 42, 15ms, 2nd, 0x1f: a value written with digits first is a quantity or an id
    if len(part) >= 8 and _HEX.fullmatch(part):
        return True  # eight or more hex digits in one case: a hash, an address or a mask, even without a digit
    return len(_DIGIT_RUNS.findall(part)) >= 2


def _absolute_path(core: str) -> bool:
    """A path from a root: ``/``, ``\\``, ``~`` or a drive such as ``C:\\``."""
    return core[0] in "/\\~" or (len(core) > 2 and core[1] == ":" and core[2] in "/\\" and core[0].isalpha())


def _is_value(core: str) -> bool:
    """Whether a word stripped of its wrapping punctuation is a value by shape."""
    if core.count("/") + core.count("\\") >= 2:
        return True  # a relative path with directories
    if core.count(".") >= 2 and _DOTTED_NAME.fullmatch(core):
        # a name in a hierarchy of three levels or more (a module, class or host): a path written with dots; but an
        # error's type (java.io.IOException) says which failure it is, and failures of two types are two events
        return not core.endswith(("Exception", "Error"))
    if _NUMBERISH.search(core) and any(_value_part(p) for p in _PART.findall(core)):
        return True
    return "." in core and _HOST.fullmatch(core) is not None


def _mask_core(core: str) -> str:
    if not core or core.isalpha():
        return WILDCARD if len(core) >= 8 and _HEX.fullmatch(core) else core
    url = _URL.match(core)
    if url:
        return url.group() + WILDCARD if url.end() < len(core) else core
    if _absolute_path(core):
        return WILDCARD
    for separator in "=:":
        at = core.find(separator)
        if at > 0 and _KEY.fullmatch(core, 0, at):
            value = core[at + 1 :]
            return core[: at + 1] + _mask_word(value) if value else core
    return WILDCARD if _is_value(core) else core


def _mask_word(word: str) -> str:
    """``word`` with the value core of each of its fields replaced by ``<*>``, the punctuation around kept."""
    if word.isalpha():
        return WILDCARD if len(word) >= 8 and _HEX.fullmatch(word) else word
    if _FIELD_BREAK.search(word) is None:
        return _mask_field(word)
    # A word without spaces may still be a list of fields (a=1,b=2) or a call (point(3,4)): each field is judged.
    return "".join(
        _mask_field(field) if field and field not in _FIELD_SEPARATORS else field for field in _FIELD_SPLIT.split(word)
    )


def _mask_field(word: str) -> str:
    start, end = 0, len(word)
    while start < end and word[start] in OPEN:
        start += 1
    while end > start and word[end - 1] in CLOSE:
        end -= 1
    core = word[start:end]
    masked = _mask_core(core)
    if masked is core:
        return word
    return word[:start] + masked + word[end:]


def tokenize(message: str, memo: dict[str, str] | None = None) -> list[str]:
    """Split a message into words, each value among them masked to ``<*>`` (see the module's token classes).

    ``memo`` remembers the masked form of words already seen (the caller owns and bounds it): the fixed words of a
    log repeat on every line, so most words are then a dictionary lookup.
    """
    if "'" in message or '"' in message:
        message = _QUOTED_TEXT.sub(lambda m: m.group("q") + WILDCARD + m.group("q"), message)
    tokens: list[str] = []
    calendar: list[int] = []
    for word in message.split():
        if tokens and len(word) <= 5 and tokens[-1].endswith(WILDCARD):
            unit = word.rstrip(CLOSE)
            if unit and _MAGNITUDE_UNIT.fullmatch(unit):
                tokens[-1] += word[len(unit) :]  # "9.2 KB,": the unit goes with the value, the comma stays
                continue
        known = None if memo is None else memo.get(word)
        if known is None:
            masked = _mask_word(word)
            if memo is not None:
                memo[word] = masked
        else:
            masked = known
        if len(masked) <= 10 and masked[:1].isupper() and masked.rstrip(CLOSE).lower() in _CALENDAR:
            calendar.append(len(tokens))
        tokens.append(masked)
    # A capitalised month or weekday name next to a value is part of a date written out (Mon Dec 5 10:15:30); both
    # directions, so that a name next to a name next to a number is found too.
    for i in [*reversed(calendar), *calendar]:
        if tokens[i].startswith(WILDCARD):
            continue
        if (i > 0 and tokens[i - 1].endswith(WILDCARD)) or (i + 1 < len(tokens) and tokens[i + 1].startswith(WILDCARD)):
            word = tokens[i]
            tokens[i] = WILDCARD + word[len(word.rstrip(CLOSE)) :]
    return tokens


def mask(message: str) -> str:
    """``message`` with its values replaced by ``<*>`` and its whitespace collapsed."""
    return " ".join(tokenize(message))
