"""Split a raw log line's header (timestamp, level, component) from its message.

A :class:`LogSource` splits the lines of one source (a file, a CloudWatch log group, an agent's pushed source): by
its explicit format when the operator gave one (:mod:`.formats`), else by the header layout
it learns from the source's first lines (:mod:`.inference`); a line that does not fit that
layout is split on its own evidence, as :func:`parse_line` does. A structured line (a JSON object, alone or after a
header) is split by its fields instead (:mod:`.structured`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from telemetry.learning.logpatterns.fields import level_of
from telemetry.learning.logpatterns.formats import LogFormat, compiled_format
from telemetry.learning.logpatterns.inference import (
    HeaderShape,
    ParsedLine,
    Sample,
    ShapeSplitter,
    infer_shape,
    sample_of,
    single_line_shape,
    split_by_shape,
)
from telemetry.learning.logpatterns.structured import StructuredFields, structured_fields

__all__ = ["CONSISTENCY", "SAMPLE_LINES", "LogSource", "ParsedLine", "parse_line"]

# The layout is learned from this many of a source's first lines (blank and JSON lines left out). Every share of
# lines from 0.5 to 0.99 and every sample from 20 to 2,000 lines split the development logs identically.
SAMPLE_LINES = 200
# A header position belongs to the layout when this share of the lines that have a header agree on its kind.
CONSISTENCY = 0.9


def parse_line(raw: str) -> ParsedLine:
    """Split ``raw`` on its own evidence: a header only when the line starts with a timestamp; a JSON object by
    its fields. Lines of a known source are better split by its :class:`LogSource`."""
    return _parse(raw.rstrip("\r\n"), None)


class LogSource:
    """How the lines of one source are split. Not thread-safe: its owner serialises the calls.

    Learning keeps one count per distinct header signature of the first ``sample_lines`` lines, then only the
    learned layout (a few characters).
    """

    def __init__(
        self,
        log_format: LogFormat | str | None = None,
        *,
        sample_lines: int = SAMPLE_LINES,
        consistency: float = CONSISTENCY,
    ) -> None:
        """Raises ValueError for an explicit ``log_format`` that cannot be used (the message says why)."""
        self.log_format = compiled_format(log_format) if isinstance(log_format, str) else log_format
        self._sample_lines = sample_lines
        self._consistency = consistency
        self._samples: Counter[Sample] | None = Counter() if self.log_format is None else None
        self._seen = 0
        self._shape: HeaderShape | None = None
        self._splitter: ShapeSplitter | None = None

    @property
    def shape(self) -> HeaderShape | None:
        """The learned header layout (None: none found yet, or an explicit format is used)."""
        return self._shape

    @property
    def learning(self) -> bool:
        return self._samples is not None

    def learn(self, lines: Iterable[str]) -> None:
        """Add ``lines`` to what the layout is learned from, until the sample is full; then the layout is fixed."""
        samples = self._samples
        if samples is None:
            return
        added = False
        for raw in lines:
            if self._seen >= self._sample_lines:
                break
            line = raw.rstrip("\r\n")
            if not line.strip() or structured_fields(line) is not None:
                continue
            samples[sample_of(line)] += 1
            self._seen += 1
            added = True
        if added:
            shape = self._shape = infer_shape(samples, self._consistency)
            if shape is None or self._splitter is None or self._splitter.shape != shape:
                self._splitter = None if shape is None else ShapeSplitter(shape)
        if self._seen >= self._sample_lines:
            self._samples = None

    def parse(self, raw: str) -> ParsedLine:
        """Split one line of this source."""
        return _parse(raw.rstrip("\r\n"), self)

    def split_header(self, line: str) -> ParsedLine:
        if self.log_format is not None:
            # The operator's format; a line that does not fit it (a continuation line) is all message.
            return self.log_format.split(line) or ParsedLine(None, None, None, line)
        splitter = self._splitter
        return (splitter.split(line) if splitter is not None else None) or _own_header(line)


def _own_header(line: str) -> ParsedLine:
    shape = single_line_shape(line)
    return (split_by_shape(line, shape) if shape is not None else None) or ParsedLine(None, None, None, line)


def _parse(line: str, source: LogSource | None) -> ParsedLine:
    structured = structured_fields(line)
    if structured is not None:
        return _from_structured(structured, None)
    header = source.split_header(line) if source is not None else _own_header(line)
    if len(header.message) < len(line):
        structured = structured_fields(header.message)  # "2026-11-25T10:00:00Z INFO {...}": a header, then JSON
        if structured is not None:
            return _from_structured(structured, header)
    return header


def _from_structured(fields: StructuredFields, outer: ParsedLine | None) -> ParsedLine:
    """A structured line's fields, completed by its outer header (if any) and by a header inside its message (a
    raw line wrapped in JSON by a log shipper: Docker's ``{"log": "2026-11-25 10:00:00 ERROR ...", ...}``)."""
    inner = _own_header(fields.message.rstrip("\r\n"))
    headers = [h for h in (outer, inner) if h is not None]
    level = (level_of(fields.level) or fields.level.upper()) if fields.level else None
    return ParsedLine(
        fields.timestamp
        if fields.timestamp is not None
        else next((h.timestamp for h in headers if h.timestamp is not None), None),
        level or next((h.level for h in headers if h.level), None),
        fields.component or next((h.component for h in headers if h.component), None),
        inner.message,
    )
