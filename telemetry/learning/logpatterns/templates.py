"""Token sequences of templates: runs of values, comparison, coverage and the written template."""

from __future__ import annotations

from telemetry.learning.logpatterns.masking import CLOSE, OPEN, WILDCARD


def collapse(tokens: list[str]) -> tuple[list[str], list[int]]:
    """Tokens with each run of bare ``<*>`` made one (a list of values has any length), and the run lengths.

    Lines listing one, two or five values are the same event; the run lengths are kept so that a template whose
    lines always list two values still reads ``<*> <*>``.
    """
    out: list[str] = []
    runs: list[int] = []
    for token in tokens:
        if token == WILDCARD and out and out[-1] == WILDCARD:
            runs[-1] += 1
            continue
        out.append(token)
        runs.append(1)
    return out, runs


def render(tokens: list[str], runs: list[int]) -> str:
    """The template text: a run seen with one length is written out, a run of varying length is one ``<*>``."""
    return " ".join(
        " ".join([WILDCARD] * run) if token == WILDCARD and run > 1 else token
        for token, run in zip(tokens, runs, strict=True)
    )


def generalise(mine: str, theirs: str) -> str:
    """The token that fits both: the value replaced by ``<*>``, a shared ``key=`` and wrapping punctuation kept.

    The key names the field and brackets or a trailing comma belong to the sentence, so ``user=root`` and
    ``user=admin`` give ``user=<*>`` and ``root,`` and ``admin,`` give ``<*>,``.
    """
    if mine == theirs:
        return mine
    for separator in "=:":
        at = mine.find(separator)
        if at > 0 and theirs[: at + 1] == mine[: at + 1]:
            return mine[: at + 1] + generalise(mine[at + 1 :], theirs[at + 1 :])
    lead = 0
    while lead < min(len(mine), len(theirs)) and mine[lead] == theirs[lead] and mine[lead] in OPEN:
        lead += 1
    trail = 0
    while (
        trail < min(len(mine), len(theirs)) - lead
        and mine[-1 - trail] == theirs[-1 - trail]
        and mine[-1 - trail] in CLOSE
    ):
        trail += 1
    return mine[:lead] + WILDCARD + (mine[len(mine) - trail :] if trail else "")


def fits(mine: str, theirs: str) -> bool:
    """Whether ``theirs`` fits the template token ``mine`` (equal, or matching around its ``<*>``)."""
    if mine in (theirs, WILDCARD):
        return True
    at = mine.find(WILDCARD)
    if at < 0:
        return False
    prefix, suffix = mine[:at], mine[at + len(WILDCARD) :]
    return len(theirs) >= len(prefix) + len(suffix) and theirs.startswith(prefix) and theirs.endswith(suffix)


def compare(template: list[str], tokens: list[str]) -> tuple[int, tuple[int, ...]]:
    """(number of equal tokens, positions where a fixed template token is contradicted)."""
    same = 0
    where: list[int] = []
    for i, (mine, theirs) in enumerate(zip(template, tokens, strict=True)):
        if mine == theirs:
            same += 1
        elif mine != WILDCARD and (WILDCARD not in mine or not fits(mine, theirs)):
            where.append(i)
    return same, tuple(where)


def covers(general: list[str], specific: list[str]) -> bool:
    """Whether every line of ``specific`` also fits ``general``."""
    return all(g in (s, WILDCARD) or (WILDCARD in g and fits(g, s)) for g, s in zip(general, specific, strict=True))


def keeps_a_word(tokens: list[str]) -> bool:
    """Whether ``tokens`` hold a fixed word: an event is told apart by its fixed words, and a template of values
    only would take in every line of its length."""
    return any(token != WILDCARD for token in tokens)


def same_field(mine: str, theirs: str) -> bool:
    """Whether two tokens are one ``key=value`` field (the same key, a single ``=`` each)."""
    at = mine.find("=")
    return at > 0 and mine.count("=") == 1 and theirs.count("=") == 1 and theirs[: at + 1] == mine[: at + 1]
