"""What the pattern miner is configured with and what it tells: its settings, a message's match, a pattern's stats."""

from __future__ import annotations

import re
from dataclasses import dataclass

from pydantic import BaseModel, Field

EMPTY_TEMPLATE = "<empty>"
ERROR_LEVELS = frozenset({"ERROR", "FATAL", "CRITICAL", "CRIT", "ALERT", "EMERG", "SEVERE"})
_ERROR_TEXT = re.compile(
    r"\b(?:error|exception|fatal|failed|failure|panic|traceback|segfault|refused|denied|timed out|timeout)\b"
)


def is_error(message: str, level: str | None, max_chars: int = 10_000) -> bool:
    """Whether a message counts as an error: an error level, or words that read as one (any level)."""
    if level is not None and level.upper() in ERROR_LEVELS:
        return True
    text = message[:max_chars].lower()
    # A part of every word of _ERROR_TEXT: most lines hold none, and these substring tests (written out, not a loop)
    # cost a sixth of the search.
    return (
        "err" in text
        or "xcept" in text
        or "fatal" in text
        or "fail" in text
        or "panic" in text
        or "trace" in text
        or "segf" in text
        or "refus" in text
        or "denied" in text
        or "time" in text
    ) and _ERROR_TEXT.search(text) is not None


class MinerConfig(BaseModel):
    """Settings of the pattern miner; the defaults are the one configuration used for every log."""

    distinct_values: int = Field(
        default=5,
        ge=2,
        description="Distinct words seen at one position of otherwise equal messages before it counts as a variable; "
        "fewer stay separate patterns (true/false, start/stop, the states of a state machine are different events). "
        "A key=value field needs only two. Leave-one-system-out on the development logs chooses 4 or 5 for every "
        "left-out system (tests/benchmarks/loghub_cv.py).",
    )
    similarity_threshold: float = Field(
        default=0.8,
        ge=0.0,
        le=1.0,
        description="Least share of equal tokens for messages differing in several positions at once to be "
        "generalised together; a single differing position needs only the distinct_values evidence.",
    )
    max_patterns: int = Field(
        default=5000, ge=1, description="Most patterns kept; the least recently seen one is evicted beyond this."
    )
    max_message_chars: int = Field(
        default=10_000, ge=1, description="Characters of a message looked at for matching; the rest is ignored."
    )
    max_components: int = Field(default=20, ge=0, description="Most distinct components remembered per pattern.")
    max_candidates: int = Field(
        default=64,
        ge=1,
        description="Most patterns of one length and first word a message is compared with (the most recently used): "
        "bounds the work per line whatever the stream. Patterns merge as their variables show, so a key rarely holds "
        "more than a dozen; lines that never merge (free text, noise) would otherwise cost each line a comparison "
        "with all of them.",
    )
    max_example_chars: int = Field(default=2000, ge=1, description="Longest example message kept per pattern.")


@dataclass(frozen=True, slots=True)
class PatternMatch:
    """Where one message landed: the pattern's stable id, its template now, whether the message created it, and
    whether :meth:`LogPatternMiner.add` counted it as an error (``match`` does not judge that: always False)."""

    pattern_id: int
    template: str
    is_new: bool
    is_error: bool = False


class PatternStats(BaseModel):
    """What the miner knows about one pattern."""

    pattern_id: int = Field(description="Stable id of the pattern (the oldest id when patterns merged).")
    template: str = Field(description="Template with <*> for the variable parts.")
    count: int = Field(description="Messages that matched the pattern.")
    first_seen: float = Field(description="Timestamp (Unix seconds) of the first matching message.")
    last_seen: float = Field(description="Timestamp (Unix seconds) of the latest matching message.")
    example: str = Field(description="The first raw message of the pattern (truncated when very long).")
    components: list[str] = Field(description="Components that logged the pattern, in first-seen order (bounded).")
    levels: dict[str, int] = Field(description="Message counts by log level; messages without a level are left out.")
    error_count: int = Field(description="Messages at an error level (ERROR, FATAL, CRITICAL...) or reading as errors.")
