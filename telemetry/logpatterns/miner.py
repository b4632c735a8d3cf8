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
        default=0.6,
        ge=0.0,
        le=1.0,
        description="Least share of a pattern's fixed tokens a message must repeat to join it.",
    )
    mature_count: int = Field(
        default=5, ge=1, description="Messages after which a pattern's fixed tokens are trusted to be fixed."
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
    """Groups log messages into templates online, one message at a time, in bounded memory.

    A message joins a pattern of the same token count and first token whose fixed tokens it repeats. A young
    pattern (fewer than ``mature_count`` messages) also takes in near misses, as Drain does, so that values the
    masks missed become ``<*>`` early. A mature pattern's fixed tokens are trusted: a message differing in one of
    them starts a new pattern (``true`` vs ``false``, ``in`` vs ``out`` are different events), until a third
    distinct value at that position shows it is a variable after all; the patterns then merge into the older one.
    """

    def __init__(self, config: MinerConfig | None = None) -> None:
        self.config = config or MinerConfig()
        self._patterns: OrderedDict[int, _Pattern] = OrderedDict()
        self._index: dict[tuple[int, str], list[_Pattern]] = {}
        self._aliases: OrderedDict[int, int] = OrderedDict()
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
        pattern = self._place(tokens)
        is_new = pattern is None
        if pattern is None:
            pattern = self._create(tokens, message, now)
        else:
            self._patterns.move_to_end(pattern.pattern_id)
        self._record(pattern, message, now, level, component)
        return PatternMatch(pattern_id=pattern.pattern_id, template=pattern.template(), is_new=is_new)

    def match(self, message: str) -> PatternMatch | None:
        """The pattern ``message`` fits as it is, without changing anything; None when there is none."""
        tokens = tokenize(message)
        best: _Pattern | None = None
        best_same = -1
        for pattern in self._index.get(_key(tokens), ()):
            same, hard, _ = _compare(pattern.tokens, tokens)
            if hard == 0 and same > best_same:
                best, best_same = pattern, same
        if best is None:
            return None
        return PatternMatch(pattern_id=best.pattern_id, template=best.template(), is_new=False)

    def resolve(self, pattern_id: int) -> int:
        """The id that a pattern merged into since (itself when it was not merged)."""
        while pattern_id in self._aliases:
            pattern_id = self._aliases[pattern_id]
        return pattern_id

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

    def _place(self, tokens: list[str]) -> _Pattern | None:
        """The pattern ``tokens`` joins (generalised to fit them), or None when they start a new one."""
        bucket = self._index.get(_key(tokens))
        if not bucket:
            return None
        n = len(tokens) or 1
        exact: _Pattern | None = None
        exact_same = -1
        young: _Pattern | None = None
        young_same = -1
        siblings: dict[int, list[_Pattern]] = {}
        least_same = self.config.similarity_threshold * n
        mature = self.config.mature_count
        for pattern in bucket:
            same, hard, where = _compare(pattern.tokens, tokens)
            if hard == 0:
                if same > exact_same:
                    exact, exact_same = pattern, same
                continue
            if hard == 1:
                siblings.setdefault(where, []).append(pattern)
            if pattern.count < mature and same >= least_same and same > young_same:
                young, young_same = pattern, same
        if exact is not None:
            return exact
        for group in siblings.values():
            if len(group) >= 2:
                # With this message, three distinct values at one position: it holds a variable.
                survivor = min(group, key=lambda p: p.pattern_id)
                _generalise(survivor, tokens)
                for other in group:
                    if other is not survivor:
                        self._absorb(survivor, other)
                return survivor
        if young is not None:
            _generalise(young, tokens)
            self._merge_covered(young)
            return self._patterns.get(young.pattern_id) or self._patterns[self.resolve(young.pattern_id)]
        return None

    def _merge_covered(self, pattern: _Pattern) -> None:
        """Merge the patterns that ``pattern`` now covers (or that cover it) into the older of each pair."""
        for other in list(self._index.get(pattern.key, ())):
            if other is pattern or other.pattern_id not in self._patterns:
                continue
            if _covers(pattern.tokens, other.tokens) or _covers(other.tokens, pattern.tokens):
                older, newer = sorted((pattern, other), key=lambda p: p.pattern_id)
                self._absorb(older, newer)
                pattern = older

    def _absorb(self, survivor: _Pattern, victim: _Pattern) -> None:
        for i, (mine, theirs) in enumerate(zip(survivor.tokens, victim.tokens, strict=True)):
            if mine != theirs:
                survivor.tokens[i] = WILDCARD
        survivor.count += victim.count
        survivor.error_count += victim.error_count
        survivor.levels.update(victim.levels)
        survivor.first_seen = min(survivor.first_seen, victim.first_seen)
        survivor.last_seen = max(survivor.last_seen, victim.last_seen)
        for component in victim.components:
            if component not in survivor.components and len(survivor.components) < self.config.max_components:
                survivor.components.append(component)
        self._drop(victim)
        self._aliases[victim.pattern_id] = survivor.pattern_id
        if len(self._aliases) > self.config.max_patterns:
            self._aliases.popitem(last=False)

    def _create(self, tokens: list[str], message: str, now: float) -> _Pattern:
        if len(self._patterns) >= self.config.max_patterns:
            self._drop(next(iter(self._patterns.values())))
        key = _key(tokens)
        pattern = _Pattern(
            pattern_id=self._next_id,
            key=key,
            tokens=list(tokens),
            example=message[: self.config.max_example_chars],
            first_seen=now,
        )
        self._next_id += 1
        self._patterns[pattern.pattern_id] = pattern
        self._index.setdefault(key, []).append(pattern)
        return pattern

    def _drop(self, pattern: _Pattern) -> None:
        del self._patterns[pattern.pattern_id]
        bucket = self._index[pattern.key]
        bucket.remove(pattern)
        if not bucket:
            del self._index[pattern.key]

    def _record(self, pattern: _Pattern, message: str, now: float, level: str | None, component: str | None) -> None:
        pattern.count += 1
        pattern.last_seen = max(pattern.last_seen, now)
        if level:
            pattern.levels[level.upper()] += 1
        if (level and level.upper() in _ERROR_LEVELS) or _ERROR_TEXT.search(message):
            pattern.error_count += 1
        if component and component not in pattern.components and len(pattern.components) < self.config.max_components:
            pattern.components.append(component)


def _compare(template: list[str], tokens: list[str]) -> tuple[int, int, int]:
    """(tokens equal, fixed template tokens contradicted, position of the last contradiction)."""
    same = hard = 0
    where = -1
    for i, (mine, theirs) in enumerate(zip(template, tokens, strict=True)):
        if mine == theirs:
            same += 1
        elif mine != WILDCARD:
            hard += 1
            where = i
    return same, hard, where


def _covers(general: list[str], specific: list[str]) -> bool:
    return all(g in (WILDCARD, s) for g, s in zip(general, specific, strict=True))


def _generalise(pattern: _Pattern, tokens: list[str]) -> None:
    for i, (mine, theirs) in enumerate(zip(pattern.tokens, tokens, strict=True)):
        if mine != theirs:
            pattern.tokens[i] = WILDCARD
