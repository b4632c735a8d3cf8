"""The online pattern miner: each message joins the pattern whose fixed tokens it repeats, or starts a new one."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Collection
from itertools import islice

from telemetry.learning.logpatterns.masking import WILDCARD, tokenize
from telemetry.learning.logpatterns.model import (
    EMPTY_TEMPLATE,
    ERROR_LEVELS,
    MinerConfig,
    PatternMatch,
    PatternStats,
    is_error,
)
from telemetry.learning.logpatterns.pattern import Key, Pattern, covering, key_of, shares_a_word, takes, widen
from telemetry.learning.logpatterns.templates import collapse, compare, keeps_a_word, same_field

__all__ = [
    "EMPTY_TEMPLATE",
    "ERROR_LEVELS",
    "LogPatternMiner",
    "MinerConfig",
    "PatternMatch",
    "PatternStats",
    "is_error",
]

# Distinct words whose masked form is remembered; at about 100 bytes each a few MB, cleared when full.
_WORDS_KEPT = 50_000


class LogPatternMiner:
    """Groups log messages into templates online, one message at a time, in bounded memory.

    Messages are split into words with their values masked by shape (:mod:`.masking`), a run
    of values counting as one token, and compared with the patterns of the same token count and first word. A
    message joins a pattern when it repeats all of the pattern's fixed words (``user=<*>`` takes any ``user=``
    value). A word of a shape not known as a value is decided by the values at its position instead: a message
    differing in it starts a new pattern, and only when ``distinct_values`` different words have been seen at that
    position of otherwise equal patterns does the position become a variable and the patterns merge (a position
    with many values is a variable; two or three words there are different events); for a ``key=value`` field,
    whose key already says it holds data, two values are enough. A merge never leaves a template without a fixed
    word. It keeps the oldest id, and the merged ids keep resolving to it (:meth:`resolve`), so ids are stable
    while templates generalise. Masked token sequences seen before go straight to their pattern, so most lines
    cost one tokenisation and one lookup.
    """

    def __init__(self, config: MinerConfig | None = None) -> None:
        self.config = config or MinerConfig()
        self._patterns: OrderedDict[int, Pattern] = OrderedDict()
        # Patterns by key (token count, first word), least recently used first.
        self._index: dict[Key, OrderedDict[int, Pattern]] = {}
        self._aliases: OrderedDict[int, int] = OrderedDict()
        # Masked token sequences already placed, and the pattern they went to (bounded: cleared when full).
        self._seen: dict[tuple[str, ...], int] = {}
        # Masked form of each word met (bounded like _seen): fixed words repeat on every line.
        self._words: dict[str, str] = {}
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
        masked = self._tokenize(message)
        is_new = False
        pattern = self._known(masked)
        if pattern is None:
            tokens, runs = collapse(list(masked))
            pattern = self._place(tokens)
            if pattern is None:
                created = self._create(tokens, runs, message, now)
                # No kept pattern covers a new one (the line would have joined it); it can only cover others, and
                # only with a <*> of its own.
                pattern = self._merge_covered(created) if any(WILDCARD in t for t in tokens) else created
                is_new = pattern is created
            pattern.take_runs(runs)
            if len(self._seen) >= 4 * self.config.max_patterns:
                self._seen.clear()
            self._seen[masked] = pattern.pattern_id
        self._patterns.move_to_end(pattern.pattern_id)
        self._index[pattern.key].move_to_end(pattern.pattern_id)
        error = self._record(pattern, message, now, level, component)
        return PatternMatch(pattern.pattern_id, pattern.template, is_new, error)

    def match(self, message: str) -> PatternMatch | None:
        """The pattern ``message`` fits as it is, changing nothing; None when it fits none."""
        masked = self._tokenize(message)
        known = self._known(masked)
        if known is not None:
            return PatternMatch(known.pattern_id, known.template, False)
        tokens, _ = collapse(list(masked))
        best: Pattern | None = None
        best_same = -1
        for pattern in self._candidates(key_of(tokens)):
            same, where = compare(pattern.tokens, tokens)
            if not where and same > best_same and takes(pattern, tokens):
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

    def _tokenize(self, message: str) -> tuple[str, ...]:
        if len(self._words) >= _WORDS_KEPT:
            self._words.clear()
        return tuple(tokenize(message[: self.config.max_message_chars], self._words))

    def _candidates(self, key: Key) -> Collection[Pattern]:
        """The patterns a message of ``key`` is compared with: the ``max_candidates`` most recently used of that key,
        oldest first. Comparing with every pattern of a key costs a line time in proportion to how many there are, so
        a stream of lines that fit no pattern (free text, or a client sending noise) would slow mining quadratically;
        a pattern that stops getting lines leaves the window and is kept but no longer joined."""
        bucket = self._index.get(key)
        if not bucket:
            return ()
        if len(bucket) <= self.config.max_candidates:
            return bucket.values()  # a view: callers that merge while they iterate copy it
        recent = list(islice(reversed(bucket.values()), self.config.max_candidates))
        recent.reverse()
        return recent

    def _known(self, masked: tuple[str, ...]) -> Pattern | None:
        """The pattern that lines masking to ``masked`` went to, when it is still kept (merges only widen it)."""
        pattern_id = self._seen.get(masked)
        return None if pattern_id is None else self._patterns.get(self.resolve(pattern_id))

    def _place(self, tokens: list[str]) -> Pattern | None:
        """The pattern ``tokens`` joins (generalised to fit them when needed), or None for a new one."""
        bucket = self._candidates(key_of(tokens))
        if not bucket:
            return None
        exact: Pattern | None = None
        exact_same = -1
        # Patterns contradicted at exactly the same positions are siblings: they and this message only differ there.
        siblings: dict[tuple[int, ...], list[Pattern]] = {}
        least_same = self.config.similarity_threshold * len(tokens)
        for pattern in bucket:
            same, where = compare(pattern.tokens, tokens)
            if not where:
                if same > exact_same and takes(pattern, tokens):
                    exact, exact_same = pattern, same
                continue
            if len(where) == 1 or same >= least_same:
                siblings.setdefault(where, []).append(pattern)
                continue
            # A differing key=value field is a value that differs, not a different word: it does not make the
            # lines less alike.
            fields = sum(1 for i in where if same_field(pattern.tokens[i], tokens[i]))
            if len(where) - fields <= 1 or same + fields >= least_same:
                siblings.setdefault(where, []).append(pattern)
        if exact is not None:
            return exact
        for where, group in siblings.items():
            if self._variables_at(where, group, tokens):
                survivor = min(group, key=lambda p: p.pattern_id)
                widen(survivor, tokens)
                for other in group:
                    if other is not survivor:
                        self._absorb(survivor, other)
                return self._merge_covered(survivor)
        return None

    def _variables_at(self, where: tuple[int, ...], group: list[Pattern], tokens: list[str]) -> bool:
        """Whether the positions ``where`` of ``group`` and ``tokens`` hold variables, so that they are one event.

        The first word is never among them (it is part of the key), and the merge must leave a fixed word. Every
        differing position must show ``distinct_values`` different words: a word that differs only twice or thrice
        is more likely two or three events (true/false, start/stop) than a variable. A ``key=value`` field whose key
        all share needs only the two values it shows: the key already says it holds data.
        """
        if not shares_a_word(group, tokens, where):
            return False
        for i in where:
            if all(same_field(p.tokens[i], tokens[i]) for p in group):
                continue
            if len({p.tokens[i] for p in group} | {tokens[i]}) < self.config.distinct_values:
                return False
        return True

    def _merge_covered(self, pattern: Pattern) -> Pattern:
        """Merge every pattern that ``pattern`` covers, or that covers it, into the older one; return the survivor."""
        for other in list(self._candidates(pattern.key)):
            if other is pattern or self._patterns.get(other.pattern_id) is not other:
                continue
            if covering(pattern, other) or covering(other, pattern):
                older, newer = (pattern, other) if pattern.pattern_id < other.pattern_id else (other, pattern)
                self._absorb(older, newer)
                pattern = older
        return pattern

    def _absorb(self, survivor: Pattern, victim: Pattern) -> None:
        widen(survivor, victim.tokens)
        survivor.take_runs(victim.runs)
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

    def _create(self, tokens: list[str], runs: list[int], message: str, now: float) -> Pattern:
        if len(self._patterns) >= self.config.max_patterns:
            self._drop(next(iter(self._patterns.values())))
        pattern = Pattern(
            pattern_id=self._next_id,
            key=key_of(tokens),
            tokens=list(tokens),
            runs=list(runs),
            has_word=keeps_a_word(tokens),
            example=message[: self.config.max_example_chars],
            first_seen=now,
            last_seen=now,
        )
        pattern.retemplate()
        self._next_id += 1
        self._patterns[pattern.pattern_id] = pattern
        self._index.setdefault(pattern.key, OrderedDict())[pattern.pattern_id] = pattern
        return pattern

    def _drop(self, pattern: Pattern) -> None:
        del self._patterns[pattern.pattern_id]
        bucket = self._index[pattern.key]
        del bucket[pattern.pattern_id]
        if not bucket:
            del self._index[pattern.key]

    def _record(self, pattern: Pattern, message: str, now: float, level: str | None, component: str | None) -> bool:
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

    def _add_component(self, pattern: Pattern, component: str) -> None:
        if component not in pattern.components and len(pattern.components) < self.config.max_components:
            pattern.components.append(component)
