"""Generic variable masking and tokenisation of log messages.

Every rule here is meant to make sense on any log: values that are obviously data (addresses, numbers, ids,
paths, sizes) become the wildcard ``<*>`` so that lines differing only in those values look alike to the miner.
"""

from __future__ import annotations

import re

WILDCARD = "<*>"

# Order matters: the wider shapes (URLs, paths, addresses) go first so that the number rule does not chop them up.
_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\b[A-Za-z][A-Za-z0-9+.\-]*://\S+"), WILDCARD),
    (re.compile(r'"[^"]*"'), '"<*>"'),
    (re.compile(r"(?<=[\w.\-]=)[^\s,;&)\]}>]+"), WILDCARD),
    (re.compile(r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b"), WILDCARD),
    (re.compile(r"(?<![\w.])\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?(?![\w.])"), WILDCARD),
    (re.compile(r"(?<![\w.])(?:[0-9a-fA-F]{2}[:-]){5}[0-9a-fA-F]{2}(?![\w.])"), WILDCARD),
    (re.compile(r"\b0[xX][0-9a-fA-F]+\b"), WILDCARD),
    (re.compile(r"(?<![\w/.])(?:/[\w.\-~@%+:$]+){2,}/?"), WILDCARD),
    (re.compile(r"\b[A-Za-z]:\\[^\s,;'\"]*"), WILDCARD),
    (
        re.compile(
            r"(?<![\w.])[-+]?\d+(?:\.\d+)?\s?(?:[KMGTP]i?B|bytes?|B|ms|us|µs|ns|sec|secs|s|min|mins|h|hrs?)(?![\w])",
            re.IGNORECASE,
        ),
        WILDCARD,
    ),
    (re.compile(r"(?<![A-Za-z0-9])[-+]?\d+(?:\.\d+)*(?![A-Za-z0-9])"), WILDCARD),
)

_HAS_DIGIT = re.compile(r"\d")
_NO_WORD = re.compile(r"[^A-Za-z]*")


def mask(message: str) -> str:
    """Replace generic variable values in ``message`` with ``<*>``."""
    for pattern, repl in _RULES:
        message = pattern.sub(repl, message)
    return message


def tokenize(message: str) -> list[str]:
    """Split a message into tokens, masking variables; a token still holding a digit is a variable too."""
    tokens = mask(message).split()
    return [
        WILDCARD if _HAS_DIGIT.search(tok) or (WILDCARD in tok and _NO_WORD.fullmatch(tok.replace(WILDCARD, ""))) else tok
        for tok in tokens
    ]
