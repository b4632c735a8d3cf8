"""The online pattern miner: each message joins the most similar pattern of its shape, or starts a new one."""

from __future__ import annotations

import re
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass, field

from pydantic import BaseModel, Field

from telemetry.logpatterns.masking import WILDCARD, tokenize

EMPTY_TEMPLATE = "<empty>"
_ERROR_LEVELS = frozenset({"ERROR", "FATAL", "CRITICAL", "CRIT", "EMERG", "ALERT", "SEVERE", "E", "F"})
_ERROR_TEXT = re.compile(
    r"\b(?:error|errors|exception|fatal|failed|failure|panic|traceback|segfault|refused|denied|timed? ?out)\b",
    re.IGNORECASE,
)


class MinerConfig(BaseModel):
    """Settings of the pattern miner; the defaults are the one configuration used for every log."""

    similarity_threshold: float = Field(
        default=0.4,
        ge=0.0,
        le=1.0,
        description="Least share of a pattern's fixed tokens a message must repeat to join it.",
    )
    max_patterns: int = Field(
        default=5000, ge=1, description="Most patterns kept; the least recently seen one is evicted beyond this."
    )
    max_components: int = Field(default=20, ge=0, description="Most distinct components remembered per pattern.")
    max_example_chars: int = Field(default=2000, ge=1, description="Longest example message kept per pattern.")


class PatternMatch(BaseModel):
    """Where one message landed."""

    pattern_id: int = Field(description="Stable id of the pattern; it never changes as the template generalises.")
    template: str = Field(description="The pattern's template after this message, with <*> for variable parts.")
    is_new: bool = Field(description="True when this message created the pattern.")


class PatternStats(BaseModel):
    """What the miner knows about one pattern."""

    pattern_id: int = Field(description="Stable id of the pattern.")
    template: str = Field(description="Template with <*> for variable parts.")
    count: int = Field(description="Messages that matched the pattern.")
    first_seen: float = Field(description="Timestamp (Unix seconds) of the first matching message.")
    last_seen: float = Field(description="Timestamp (Unix seconds) of the latest matching message.")
    example: str = Field(description="The first raw message of the pattern (truncated when very long).")
    components: list[str] = Field(description="Components that logged the pattern, in first-seen order (bounded).")
    levels: dict[str, int] = Field(description="Message counts by log level; messages without a level are left out.")
    error_count: int = Field(description="Messages at an error level (ERROR, FATAL, CRITICAL) or reading as errors.")


@dataclass(eq=False, slots=True)
class _Pattern:
    pattern_id: int
    key: tuple[int, str]
    tokens: list[str]
    fixed: int
    example: str
    first_seen: float
    last_seen: float = 0.0
    count: int = 0
    error_count: int = 0
    components: list[str] = field(default_factory=list)
    levels: Counter[str] = field(default_factory=Counter)

    def template(self) -> str:
        return " ".join(self.tokens) if self.tokens else EMPTY_TEMPLATE


def _key(tokens: list[str]) -> tuple[int, str]:
    return (len(tokens), tokens[0] if tokens else "")


class LogPatternMiner:
    """Groups log messages into templates online, one message at a time, in bounded memory."""

    def __init__(self, config: MinerConfig | None = None) -> None:
        self.config = config or MinerConfig()
        self._patterns: OrderedDict[int, _Pattern] = OrderedDict()
        self._index: dict[tuple[int, str], list[_Pattern]] = {}
        self._next_id = 1

    def add(
        self,
        message: str,
        *,
        timestamp: float | None = None,
        level: str | None = None,
        component: str | None = None,
    ) -> PatternMatch:
        """Assign ``message`` (the content, without its header) to a pattern, creating one when none fits."""
        now = time.time() if timestamp is None else timestamp
        tokens = tokenize(message)
        pattern = self._best(tokens)
        is_new = pattern is None
        if pattern is None:
            pattern = self._create(tokens, message, now)
        else:
            self._generalise(pattern, tokens)
            self._patterns.move_to_end(pattern.pattern_id)
        self._record(pattern, message, now, level, component)
        return PatternMatch(pattern_id=pattern.pattern_id, template=pattern.template(), is_new=is_new)

    def match(self, message: str) -> PatternMatch | None:
        """The pattern ``message`` would join, without changing anything; None when it would start a new one."""
        pattern = self._best(tokenize(message))
        if pattern is None:
            return None
        return PatternMatch(pattern_id=pattern.pattern_id, template=pattern.template(), is_new=False)

    def patterns(self) -> list[PatternStats]:
        """Every pattern kept, most frequent first."""
        rows = [
            PatternStats(
                pattern_id=p.pattern_id,
                template=p.template(),
                count=p.count,
                first_seen=p.first_seen,
                last_seen=p.last_seen,
                example=p.example,
                components=list(p.components),
                levels=dict(p.levels),
                error_count=p.error_count,
            )
            for p in self._patterns.values()
        ]
        rows.sort(key=lambda s: (-s.count, s.pattern_id))
        return rows

    def __len__(self) -> int:
        return len(self._patterns)

    def _best(self, tokens: list[str]) -> _Pattern | None:
        candidates = self._index.get(_key(tokens))
        if not candidates:
            return None
        best: _Pattern | None = None
        best_sim = -1.0
        threshold = self.config.similarity_threshold
        for pattern in candidates:
            same = 0
            for mine, theirs in zip(pattern.tokens, tokens, strict=True):
                if mine == theirs and mine != WILDCARD:
                    same += 1
            sim = same / len(tokens) if tokens else 1.0
            if sim >= threshold and sim > best_sim:
                best, best_sim = pattern, sim
        return best

    def _create(self, tokens: list[str], message: str, now: float) -> _Pattern:
        if len(self._patterns) >= self.config.max_patterns:
            self._evict()
        key = _key(tokens)
        pattern = _Pattern(
            pattern_id=self._next_id,
            key=key,
            tokens=list(tokens),
            fixed=sum(1 for t in tokens if t != WILDCARD),
            example=message[: self.config.max_example_chars],
            first_seen=now,
        )
        self._next_id += 1
        self._patterns[pattern.pattern_id] = pattern
        self._index.setdefault(key, []).append(pattern)
        return pattern

    def _evict(self) -> None:
        _, oldest = self._patterns.popitem(last=False)
        bucket = self._index[oldest.key]
        bucket.remove(oldest)
        if not bucket:
            del self._index[oldest.key]

    @staticmethod
    def _generalise(pattern: _Pattern, tokens: list[str]) -> None:
        for i, (mine, theirs) in enumerate(zip(pattern.tokens, tokens, strict=True)):
            if mine != theirs and mine != WILDCARD:
                pattern.tokens[i] = WILDCARD
                pattern.fixed -= 1

    def _record(self, pattern: _Pattern, message: str, now: float, level: str | None, component: str | None) -> None:
        pattern.count += 1
        pattern.last_seen = now
        if level:
            pattern.levels[level.upper()] += 1
        if (level and level.upper() in _ERROR_LEVELS) or _ERROR_TEXT.search(message):
            pattern.error_count += 1
        if component and component not in pattern.components and len(pattern.components) < self.config.max_components:
            pattern.components.append(component)
