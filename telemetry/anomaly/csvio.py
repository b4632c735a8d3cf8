"""CSV front end."""
from datetime import datetime, timezone
from pathlib import Path
from typing import TextIO

def parse_timestamp(text: str) -> float:
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    dt = datetime.fromisoformat(text)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()

def detect_csv(path: Path, out: TextIO) -> int:
    return 0
