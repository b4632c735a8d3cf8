"""CSV front end: ``timestamp,value`` rows in, one JSON verdict per row out (the NAB scorer's contract)."""

from __future__ import annotations

import csv
import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from telemetry.learning.anomaly.config import DetectorConfig
from telemetry.learning.anomaly.detector import SeriesDetector

log = logging.getLogger(__name__)


def parse_timestamp(text: str) -> float:
    """Seconds since the epoch from a number or an ISO-8601 timestamp (naive timestamps are taken as UTC)."""
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    dt = datetime.fromisoformat(text)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def _parse_value(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return float("nan")


def detect_csv(path: Path, out: TextIO, config: DetectorConfig | None = None) -> int:
    """Run every row of ``path`` through one fresh detector; write one JSON line per row, in order.

    Returns the exit status: 0, or 2 when the file is not a ``timestamp,value`` CSV (with the reason on stderr
    through logging). A row whose value is not a number is answered with score 0 and does not touch the state.
    """
    detector = SeriesDetector(config)
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None or [h.strip().lower() for h in header[:2]] != ["timestamp", "value"]:
            log.error("%s: expected a header line 'timestamp,value', got %r", path, header)
            return 2
        for lineno, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) < 2:
                log.error("%s:%d: expected 'timestamp,value', got %r", path, lineno, row)
                return 2
            stamp, raw = row[0], row[1]
            try:
                ts = parse_timestamp(stamp)
            except ValueError:
                log.error("%s:%d: timestamp %r is neither a number nor ISO-8601", path, lineno, stamp)
                return 2
            value = _parse_value(raw)
            verdict = detector.update(ts, value)
            out.write(
                json.dumps(
                    {
                        "timestamp": stamp,
                        "value": value if value == value else None,
                        "score": round(verdict.score, 6),
                        "anomaly": verdict.anomaly,
                    }
                )
            )
            out.write("\n")
    return 0
