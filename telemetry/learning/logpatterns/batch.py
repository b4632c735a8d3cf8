"""Mine a whole log file: the ``self-building-mcp log-patterns FILE`` command."""

from __future__ import annotations

import json
import sys
from array import array
from collections.abc import Iterator
from itertools import islice
from pathlib import Path
from typing import BinaryIO, TextIO

from telemetry.learning.logpatterns.formats import LogFormat
from telemetry.learning.logpatterns.headers import SAMPLE_LINES, LogSource
from telemetry.learning.logpatterns.miner import LogPatternMiner, MinerConfig


def mine_file(
    path: Path, out: TextIO, config: MinerConfig | None = None, log_format: LogFormat | str | None = None
) -> int:
    """Write one ``{"pattern_id", "template"}`` JSON line to ``out`` per line of ``path``, in order; the exit code.

    Lines are decoded as UTF-8 (bad bytes replaced) and split into header and message by one :class:`LogSource`
    (``log_format`` when given, else the layout it learns from the file's first lines), then fed to one
    :class:`LogPatternMiner` in order, exactly as the server does with a batch of lines. Output waits for the end
    of the file so that each line can be reported under the pattern it ended up in: its id at arrival, followed
    through merges, and that pattern's final template. Only the ids (8 bytes a line) are held meanwhile.
    """
    miner = LogPatternMiner(config)
    source = LogSource(log_format)
    ids = array("q")
    templates: dict[int, str] = {}
    try:
        with path.open("rb") as lines:
            for chunk in _chunks(lines, SAMPLE_LINES):
                source.learn(chunk)  # the layout is learned from the first lines before they are split
                for line in chunk:
                    parsed = source.parse(line)
                    match = miner.add(
                        parsed.message, timestamp=parsed.timestamp, level=parsed.level, component=parsed.component
                    )
                    ids.append(match.pattern_id)
                    templates[match.pattern_id] = match.template
    except OSError as exc:
        sys.stderr.write(f"log-patterns: cannot read {path}: {exc.strerror or exc}\n")
        return 1
    final: dict[int, str] = {}
    for pattern_id in ids:
        row = final.get(pattern_id)
        if row is None:
            resolved = miner.resolve(pattern_id)
            template = miner.template(resolved) or templates.get(resolved) or templates[pattern_id]
            row = final[pattern_id] = json.dumps({"pattern_id": resolved, "template": template}) + "\n"
        out.write(row)
    out.flush()
    return 0


def _chunks(lines: BinaryIO, size: int) -> Iterator[list[str]]:
    while chunk := [raw.decode("utf-8", errors="replace") for raw in islice(lines, size)]:
        yield chunk
