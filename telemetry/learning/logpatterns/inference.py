"""Where a source's header ends and its message starts, learned from the source's first lines.

A program writes every line with the same header layout, and the message after it varies. So the header is the
longest run of leading fields whose kinds (:mod:`.fields`) agree position by position in at
least ``consistency`` of the lines that start alike (a probability: the other lines are continuation lines, such as a
stack trace, or the odd line of another layout), ended by a field that can close a header: a timestamp, a severity,
a ``name:``, a bracketed field, a separator, or a padded column. A plain word inside the header is a host, a logger
or a tag: it must be followed by the ``name:`` or separator that ends the header, or by the timestamp. A ``name:``
always ends the header (the convention ``component: message``). The header must say when (a timestamp) or who (a
severity with a component, on most lines), else the lines have no header. A line without evidence from other lines
(:func:`single_line_shape`) gets a header only when it starts with a timestamp, and never ends it with a bracket
(``[client x]`` may be the message's).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from telemetry.learning.logpatterns.fields import (
    ADDRESS,
    BRACKET,
    BRACKETS,
    COMPONENT,
    FUSED,
    LETTER,
    LEVEL,
    MAX_FIELDS,
    MAX_HEADER_CHARS,
    NUMBER,
    SEPARATOR,
    TIME,
    TOKENIZERS,
    WORD,
    Field,
    kind_of,
    level_of,
    shape_key,
    split_fields,
    unfuse,
)
from telemetry.learning.logpatterns.timestamps import parse_timestamp

_ENDS = frozenset((TIME, LEVEL, COMPONENT, SEPARATOR, BRACKET))  # what can close it (and a padded word)
_LOOSE = frozenset((WORD, ADDRESS))  # a host or logger: only right before the name: or separator ending the header
_RUN = WORD + ADDRESS + NUMBER
_SAYS_LEVEL = frozenset((LEVEL, LETTER, FUSED))
_MAX_STAMP_FIELDS = 6  # "Wed Mar 04 05:06:07 2026 +0100" is the longest common spelling of a moment


@dataclass(frozen=True, slots=True)
class ParsedLine:
    """A raw log line split into its header fields (None when absent) and the message content."""

    timestamp: float | None
    level: str | None
    component: str | None
    message: str


@dataclass(frozen=True, slots=True)
class HeaderShape:
    """A learned header layout: the kinds of its fields, and which of them spell the timestamp (``stamp`` fields
    from the ``stamp_at``-th; none when ``stamp`` is 0)."""

    kinds: str
    stamp: int
    stamp_at: int = 0


@dataclass(frozen=True, slots=True)
class Sample:
    """What learning keeps of one line: its fields' kinds, which are padded (bit per field), where its timestamp's
    fields start and how many they are."""

    kinds: str
    padded: int
    stamp: int
    stamp_at: int


def sample_of(line: str) -> Sample:
    fields = split_fields(line)
    padded = sum(1 << i for i, f in enumerate(fields) if f.padded)
    kinds = "".join(f.kind for f in fields)
    return Sample(kinds, padded, *_stamp_fields(line, fields, kinds))


def _stamp_fields(line: str, fields: Sequence[Field], kinds: str) -> tuple[int, int]:
    """How many fields spell a moment, and from which: from the first number or time-like field, else from the
    first time-like one (a severity, a flag or a pid may come first); (0, 0) when none does."""
    head = kinds[:_MAX_STAMP_FIELDS]
    first_time = head.find(TIME)
    first_either = next((i for i, kind in enumerate(head) if kind in (TIME, NUMBER, FUSED)), -1)
    starts = [i for i in dict.fromkeys((first_either, first_time)) if i >= 0]
    for at in starts:
        run = at + 1
        while run < min(len(fields), at + _MAX_STAMP_FIELDS) and fields[run].kind in (TIME, NUMBER):
            run += 1
        for end in range(run, at, -1):
            if _moment(line[fields[at].start : fields[end - 1].end], fields[at].kind) is not None:
                return end - at, at
    return 0, 0


def _moment(text: str, first: str) -> float | None:
    """The moment a header's time fields spell, the first of kind ``first``."""
    return parse_timestamp(unfuse(text) if first == FUSED else text)


def infer_shape(samples: Mapping[Sample, int], consistency: float) -> HeaderShape | None:
    """The header layout shared by ``samples`` (each with its number of lines; see the module's description), or
    None when they have none."""
    total = sum(samples.values())
    # The lines that carry a moment first: they are the ones with a header, while continuation lines (a stack
    # trace's "at ...") may outnumber them and start with the same kind of field.
    timed = {s: n for s, n in samples.items() if s.stamp}
    for subset in (timed, samples) if timed and len(timed) < len(samples) else (samples,):
        firsts: Counter[str] = Counter()
        for sample, count in subset.items():
            if sample.kinds:
                firsts[sample.kinds[0]] += count
        for first, support in firsts.most_common():  # the most common way lines start that makes a header
            shape = _chain(subset, first, support, consistency, total)
            if shape is not None:
                return shape
    return None


def _chain(
    samples: Mapping[Sample, int], first: str, support: int, consistency: float, total: int
) -> HeaderShape | None:
    need = consistency * support
    single = total == 1
    # Without a timestamp, a header needs most of the lines: a severity word and a name: at the start of a few
    # lines can be those messages' own words.
    majority = support * 2 > total
    members = {s: n for s, n in samples.items() if s.kinds[:1] == first}
    kinds, padded = first, [_padded(members, 0) >= need]
    best = _candidate(kinds, padded, members, single=single, majority=majority)
    while len(kinds) < MAX_FIELDS - 1 and kinds[-1] != COMPONENT:  # a name: ends the header
        pos = len(kinds)
        here: Counter[str] = Counter()
        for sample, count in members.items():
            if len(sample.kinds) > pos:
                here[sample.kinds[pos]] += count
        if not here:
            break
        kind, count = here.most_common(1)[0]
        if count < need:
            break
        members = {s: n for s, n in members.items() if s.kinds[pos : pos + 1] == kind}
        kinds += kind
        padded.append(_padded(members, pos) >= need)
        best = _candidate(kinds, padded, members, single=single, majority=majority) or best
    return best


def single_line_shape(line: str) -> HeaderShape | None:
    """The header of one line on its own evidence: only when it starts with a timestamp."""
    first = split_fields(line, 1)
    if not first or first[0].kind not in (TIME, NUMBER):
        return None  # the common case for a line without a header, decided on its first field
    shape = infer_shape({sample_of(line): 1}, 1.0)
    return shape if shape is not None and shape.stamp > 0 and shape.stamp_at == 0 else None


def _padded(members: Mapping[Sample, int], pos: int) -> int:
    return sum(n for s, n in members.items() if s.padded >> pos & 1)


def _candidate(
    kinds: str, padded: list[bool], members: Mapping[Sample, int], *, single: bool, majority: bool
) -> HeaderShape | None:
    last = kinds[-1]
    if not (last in _ENDS or (last == WORD and padded[-1])) or (single and last == BRACKET):
        return None
    for i, kind in enumerate(kinds[:-1]):
        if kind in _LOOSE and not padded[i]:
            # A host, a logger, an app name, a tag a log shipper put first: followed (through more such words and
            # ids) by the name: or separator that ends the header, or by its timestamp.
            after = kinds[i + 1 :].lstrip(_RUN) if not single else kinds[i + 1 : i + 2]
            if after[:1] not in (COMPONENT, SEPARATOR, TIME):
                return None
            if single and (i == 0 or kinds[i - 1] not in (TIME, NUMBER, BRACKET, ADDRESS)):
                return None  # alone, a word after a severity may be the message's: "INFO Starting server: ..."
    stamps: Counter[tuple[int, int]] = Counter()
    for sample, count in members.items():
        stamps[sample.stamp, sample.stamp_at] += count
    stamp, stamp_at = stamps.most_common(1)[0][0]
    if stamp_at + stamp > len(kinds):
        stamp = stamp_at = 0  # spelled partly by message words: not this header's timestamp
    says_who = any(k in _SAYS_LEVEL for k in kinds) and (COMPONENT in kinds or BRACKET in kinds)
    if stamp == 0 and TIME not in kinds and not (says_who and majority):
        return None
    return HeaderShape(kinds, stamp, stamp_at)


def split_by_shape(line: str, shape: HeaderShape) -> ParsedLine | None:
    """``line`` split by ``shape``; None when its first fields are not of the shape's kinds."""
    fields = split_fields(line, len(shape.kinds))
    if len(fields) < len(shape.kinds) or any(f.kind != k for f, k in zip(fields, shape.kinds, strict=False)):
        return None
    at, count = shape.stamp_at, shape.stamp
    stamp = _moment(line[fields[at].start : fields[at + count - 1].end], fields[at].kind) if count else None
    level = next((level_of(f.text[:1] if f.kind == FUSED else f.text) for f in fields if f.kind in _SAYS_LEVEL), None)
    slot = _component_slot(shape.kinds)
    component = _component_name(fields[slot].text, shape.kinds[slot]) if slot is not None else None
    return ParsedLine(stamp, level, component, line[fields[-1].next :])


class ShapeSplitter:
    """:func:`split_by_shape` for one shape, about three times as fast: the header's fields are read by one regular
    expression, and their kinds looked up by the header's :func:`shape_key` (bounded memo) instead of classified."""

    def __init__(self, shape: HeaderShape, memo_size: int = 1024) -> None:
        self.shape = shape
        size = len(shape.kinds)
        self._tokens = TOKENIZERS[size]
        self._last = 2 * size - 1  # group of the last field's text
        self._level = next((2 * i + 1 for i, k in enumerate(shape.kinds) if k in _SAYS_LEVEL), None)
        self._fused_level = self._level is not None and shape.kinds[self._level // 2] == FUSED
        self._first = shape.kinds[shape.stamp_at] if shape.stamp else ""
        slot = _component_slot(shape.kinds)
        self._component = None if slot is None else (2 * slot + 1, shape.kinds[slot])
        self._stamp = (2 * shape.stamp_at + 1, 2 * (shape.stamp_at + shape.stamp) - 1) if shape.stamp else None
        self._memo: dict[str, str] = {}
        self._memo_size = memo_size
        self._last_stamp = ""
        self._last_moment: float | None = None

    def split(self, line: str) -> ParsedLine | None:
        found = self._tokens.match(line, 0, min(len(line), MAX_HEADER_CHARS))
        if found is None:
            return split_by_shape(line, self.shape)  # a bracket nested deeper, or too few fields
        key = shape_key(line[found.start(1) : found.end(self._last)])
        kinds = self._memo.get(key)
        if kinds is None:
            if len(self._memo) >= self._memo_size:
                self._memo.clear()
            kinds = self._memo[key] = "".join(kind_of(found[i]) for i in range(1, self._last + 1, 2))
        if kinds != self.shape.kinds:
            return None
        stamp = self._moment(line[found.start(self._stamp[0]) : found.end(self._stamp[1])]) if self._stamp else None
        level = (
            level_of(found[self._level][:1] if self._fused_level else found[self._level])
            if self._level is not None
            else None
        )
        component = _component_name(found[self._component[0]], self._component[1]) if self._component else None
        return ParsedLine(stamp, level, component, line[found.end(self._last + 1) :])

    def _moment(self, text: str) -> float | None:
        """``parse_timestamp(text)``, remembered: lines logged in the same second (or minute) repeat their stamp."""
        if text == self._last_stamp:
            return self._last_moment
        self._last_stamp, self._last_moment = text, _moment(text, self._first)
        return self._last_moment


def _component_slot(kinds: str) -> int | None:
    """Which header field names the component: its ``name:``, else a padded last column or the last word before a
    separator (a logger), else the last bracketed field."""
    slot = kinds.rfind(COMPONENT)
    if slot >= 0:
        return slot
    if kinds[-1] == WORD:
        return len(kinds) - 1
    for i in range(len(kinds) - 2, -1, -1):
        if kinds[i] == WORD and kinds[i + 1] == SEPARATOR:
            return i
    slot = kinds.rfind(BRACKET)
    return slot if slot >= 0 else None


def _component_name(text: str, kind: str) -> str | None:
    if kind == COMPONENT:  # "name:", "process[pid]:" or "file.go:42]" (the file, not the line)
        text = text.rstrip(",;")
        name = text.rstrip(":]")
        if text.endswith("]") and "[" not in text:
            file, _, line = name.rpartition(":")
            return (file if file and line.isdigit() else name) or None
        return name[: name.index("[")] if "[" in name[1:] else name
    if kind == BRACKET:  # "[thread]", or "[thread:Class@line]": its last ":" part without the line number
        inner = text[1 : text.rfind(BRACKETS[text[0]])]
        return inner.rsplit(":", 1)[-1].split("@", 1)[0].strip() or None
    return text
