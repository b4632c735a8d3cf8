"""The online pattern miner: each message joins the pattern whose fixed tokens it repeats, or starts a new one."""

from __future__ import annotations

import re
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass, field

from pydantic import BaseModel, Field

from telemetry.logpatterns.masking import WILDCARD, tokenize

EMPTY_TEMPLATE = "<empty>"
ERROR_LEVELS = frozenset({"ERROR", "FATAL", "CRITICAL", "CRIT", "ALERT", "EMERG", "SEVERE"})
_ERROR_TEXT = re.compile(
    r"\b(?:error|exception|fatal|failed|failure|panic|traceback|segfault|refused|denied|timed out|timeout)\b",
    re.IGNORECASE,
)

Key = tuple[int, str]


def is_error(message: str, level: str | None, max_chars: int = 10_000) -> bool:
    """Whether a message counts as an error: an error level, or words that read as one (any level)."""
    if level is not None and level.upper() in ERROR_LEVELS:
        return True
    return _ERROR_TEXT.search(message, 0, max_chars) is not None


class MinerConfig(BaseModel):
    """Settings of the pattern miner; the defaults are the one configuration used for every log."""

    distinct_values: int = Field(
        default=3,
        ge=2,
        description="Distinct words seen at one position of otherwise equal messages before it counts as a variable; "
        "fewer stay separate patterns (true/false, in/out are different events).",
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


@dataclass(eq=False, slots=True)
class _Pattern:
    pattern_id: int
    key: Key
    tokens: list[str]
    example: str
    first_seen: float
    last_seen: float
    template: str = ""
    count: int = 0
    error_count: int = 0
    components: list[str] = field(default_factory=list)
    levels: Counter[str] = field(default_factory=Counter)

    def retemplate(self) -> None:
        self.template = " ".join(self.tokens) if self.tokens else EMPTY_TEMPLATE


class LogPatternMiner:
    """Groups log messages into templates online, one message at a time, in bounded memory.

    Messages are masked (:mod:`~telemetry.logpatterns.masking`) and compared with the patterns of the same token
    count and first token. A message joins a pattern when it repeats all of the pattern's fixed tokens. A fixed
    word is not turned into ``<*>`` at the first contradiction: a message differing in it starts a new pattern,
    and only when ``distinct_values`` different words have been seen at that position of otherwise equal patterns
    does the position become ``<*>`` and the patterns merge. A merge keeps the oldest id, and the merged ids keep
    resolving to it (:meth:`resolve`), so ids are stable while templates generalise.
    """

    def __init__(self, config: MinerConfig | None = None) -> None:
        self.config = config or MinerConfig()
        self._patterns: OrderedDict[int, _Pattern] = OrderedDict()
        self._index: dict[Key, list[_Pattern]] = {}
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
        tokens = tokenize(message[: self.config.max_message_chars])
        pattern = self._place(tokens)
        is_new = False
        if pattern is None:
            created = self._create(tokens, message, now)
            pattern = self._merge_covered(created)
            is_new = pattern is created
        self._patterns.move_to_end(pattern.pattern_id)
        error = self._record(pattern, message, now, level, component)
        return PatternMatch(pattern.pattern_id, pattern.template, is_new, error)

    def match(self, message: str) -> PatternMatch | None:
        """The pattern ``message`` fits as it is, changing nothing; None when it fits none."""
        tokens = tokenize(message[: self.config.max_message_chars])
        best: _Pattern | None = None
        best_same = -1
        for pattern in self._index.get(_key(tokens), ()):
            same, where = _compare(pattern.tokens, tokens)
            if not where and same > best_same:
                best, best_same = pattern, same
        return None if best is None else PatternMatch(best.pattern_id, best.template, False)

    def resolve(self, pattern_id: int) -> int:
        """The id of the pattern that ``pattern_id`` merged into (itself when it did not merge)."""
        while pattern_id in self._aliases:
            pattern_id = self._aliases[pattern_id]
        return pattern_id

    def template(self, pattern_id: int) -> str | None:
        """The current template of a pattern (following merges); None once it has been evicted."""
        pattern = self._patterns.get(self.resolve(pattern_id))
        return None if pattern is None else pattern.template

    def patterns(self) -> list[PatternStats]:
        """Every pattern kept, most frequent first."""
        rows = [
            PatternStats(
                pattern_id=p.pattern_id,
                template=p.template,
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
        """The pattern ``tokens`` joins (generalised to fit them when needed), or None for a new one."""
        bucket = self._index.get(_key(tokens))
        if not bucket:
            return None
        exact: _Pattern | None = None
        exact_same = -1
        # Patterns contradicted at exactly the same positions are siblings: they and this message only differ there.
        siblings: dict[tuple[int, ...], list[_Pattern]] = {}
        least_same = self.config.similarity_threshold * len(tokens)
        for pattern in bucket:
            same, where = _compare(pattern.tokens, tokens)
            if not where:
                if same > exact_same:
                    exact, exact_same = pattern, same
            elif len(where) == 1 or same >= least_same:
                siblings.setdefault(where, []).append(pattern)
        if exact is not None:
            return exact
        for group in siblings.values():
            if len(group) + 1 >= self.config.distinct_values:
                survivor = min(group, key=lambda p: p.pattern_id)
                _generalise(survivor, tokens)
                for other in group:
                    if other is not survivor:
                        self._absorb(survivor, other)
                return self._merge_covered(survivor)
        return None

    def _merge_covered(self, pattern: _Pattern) -> _Pattern:
        """Merge every pattern that ``pattern`` covers, or that covers it, into the older one; return the survivor."""
        for other in list(self._index.get(pattern.key, ())):
            if other is pattern or self._patterns.get(other.pattern_id) is not other:
                continue
            if _covers(pattern.tokens, other.tokens) or _covers(other.tokens, pattern.tokens):
                older, newer = (pattern, other) if pattern.pattern_id < other.pattern_id else (other, pattern)
                self._absorb(older, newer)
                pattern = older
        return pattern

    def _absorb(self, survivor: _Pattern, victim: _Pattern) -> None:
        _generalise(survivor, victim.tokens)
        survivor.count += victim.count
        survivor.error_count += victim.error_count
        survivor.levels.update(victim.levels)
        if victim.first_seen < survivor.first_seen:
            survivor.first_seen, survivor.example = victim.first_seen, victim.example
        survivor.last_seen = max(survivor.last_seen, victim.last_seen)
        for component in victim.components:
            self._add_component(survivor, component)
        self._drop(victim)
        self._aliases[victim.pattern_id] = survivor.pattern_id
        if len(self._aliases) > self.config.max_patterns:
            self._aliases.popitem(last=False)

    def _create(self, tokens: list[str], message: str, now: float) -> _Pattern:
        if len(self._patterns) >= self.config.max_patterns:
            self._drop(next(iter(self._patterns.values())))
        pattern = _Pattern(
            pattern_id=self._next_id,
            key=_key(tokens),
            tokens=list(tokens),
            example=message[: self.config.max_example_chars],
            first_seen=now,
            last_seen=now,
        )
        pattern.retemplate()
        self._next_id += 1
        self._patterns[pattern.pattern_id] = pattern
        self._index.setdefault(pattern.key, []).append(pattern)
        return pattern

    def _drop(self, pattern: _Pattern) -> None:
        del self._patterns[pattern.pattern_id]
        bucket = self._index[pattern.key]
        bucket.remove(pattern)
        if not bucket:
            del self._index[pattern.key]

    def _record(self, pattern: _Pattern, message: str, now: float, level: str | None, component: str | None) -> bool:
        """Count one message of ``pattern``; returns whether it is an error."""
        pattern.count += 1
        pattern.last_seen = max(pattern.last_seen, now)
        upper = level.upper() if level else None
        if upper:
            pattern.levels[upper] += 1
        error = is_error(message, upper, self.config.max_message_chars)
        if error:
            pattern.error_count += 1
        if component:
            self._add_component(pattern, component)
        return error

    def _add_component(self, pattern: _Pattern, component: str) -> None:
        if component not in pattern.components and len(pattern.components) < self.config.max_components:
            pattern.components.append(component)


def _key(tokens: list[str]) -> Key:
    return (len(tokens), tokens[0] if tokens else "")


def _compare(template: list[str], tokens: list[str]) -> tuple[int, tuple[int, ...]]:
    """(number of equal tokens, positions where a fixed template token is contradicted)."""
    same = 0
    where: list[int] = []
    for i, (mine, theirs) in enumerate(zip(template, tokens, strict=True)):
        if mine == theirs:
            same += 1
        elif mine != WILDCARD:
            where.append(i)
    return same, tuple(where)


def _covers(general: list[str], specific: list[str]) -> bool:
    return all(g in (WILDCARD, s) for g, s in zip(general, specific, strict=True))


def _generalise(pattern: _Pattern, tokens: list[str]) -> None:
    changed = False
    for i, (mine, theirs) in enumerate(zip(pattern.tokens, tokens, strict=True)):
        if mine != theirs and mine != WILDCARD:
            pattern.tokens[i] = WILDCARD
            changed = True
    if changed:
        pattern.retemplate()
