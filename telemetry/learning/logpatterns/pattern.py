"""One pattern the miner keeps: its tokens, counts and statistics, and how patterns compare and merge."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from telemetry.learning.logpatterns.masking import WILDCARD
from telemetry.learning.logpatterns.model import EMPTY_TEMPLATE
from telemetry.learning.logpatterns.templates import covers, fits, generalise, render

# Patterns are compared only with those of the same token count (a run of <*> counted once) and first word: the
# first word is taken as fixed (Drain's observation: the messages of one event start alike), which also keeps the
# comparisons per line few.
Key = tuple[int, str]


@dataclass(eq=False, slots=True)
class Pattern:
    pattern_id: int
    key: Key
    tokens: list[str]
    runs: list[int]
    example: str
    first_seen: float
    last_seen: float
    template: str = ""
    has_word: bool = True
    count: int = 0
    error_count: int = 0
    components: list[str] = field(default_factory=list)
    levels: Counter[str] = field(default_factory=Counter)

    def retemplate(self) -> None:
        self.template = render(self.tokens, self.runs) if self.tokens else EMPTY_TEMPLATE

    def take_runs(self, runs: list[int]) -> None:
        """Note how many values each masked run held; a run whose length varies is rendered as one ``<*>``."""
        if runs != self.runs:
            self.runs = [mine if mine == theirs else 0 for mine, theirs in zip(self.runs, runs, strict=True)]
            self.retemplate()


def key_of(tokens: list[str]) -> Key:
    return (len(tokens), tokens[0] if tokens else "")


def takes(pattern: Pattern, tokens: list[str]) -> bool:
    """Whether a pattern with no contradicted position takes ``tokens``: a pattern of values only takes only lines
    of values only (it has no fixed word to tell its event apart by)."""
    return pattern.has_word or pattern.tokens == tokens


def shares_a_word(group: list[Pattern], tokens: list[str], where: tuple[int, ...]) -> bool:
    """Whether merging ``group`` with ``tokens`` leaves a fixed word: one they all share outside ``where``.

    An event is told apart by its fixed words; a template of values only would take in every line of its length.
    """
    skip = set(where)
    return any(
        i not in skip and token != WILDCARD and all(p.tokens[i] == token for p in group)
        for i, token in enumerate(tokens)
    )


def covering(general: Pattern, specific: Pattern) -> bool:
    return (general.has_word or general.tokens == specific.tokens) and covers(general.tokens, specific.tokens)


def widen(pattern: Pattern, tokens: list[str]) -> None:
    changed = False
    for i, (mine, theirs) in enumerate(zip(pattern.tokens, tokens, strict=True)):
        if not fits(mine, theirs):
            pattern.tokens[i] = generalise(mine, theirs)
            changed = True
    if changed:
        pattern.retemplate()
