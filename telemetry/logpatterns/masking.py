"""Generic variable masking and tokenisation of log messages.

Every rule here is meant to make sense on any log: values that are obviously data (URLs, addresses, host names,
numbers, hex, UUIDs, ids such as ``blk_-42``, paths, sizes, ``key=value`` values, quoted strings) become the
wildcard ``<*>`` so that lines differing only in those values look alike to the miner.
"""

from __future__ import annotations

import re

WILDCARD = "<*>"

_URL = re.compile(r"(?<![\w+.\-])[A-Za-z][\w+.\-]*://\S+")
# The value after ``key=``: up to a separator, keeping bracketed groups such as Rect(0, 0) or {a b} whole.
_KEY_VALUE = re.compile(r"""(?<=[\w.\-])=(?:[^\s,;&)\]}>{(\["']|\{[^\s{}]*\}|\([^\s()]*\)|\[[^\s\[\]]*\])+""")
_QUOTED = re.compile(r'"[^"]*"')
_MAC = re.compile(r"\b[0-9a-fA-F]{2}(?:[:-][0-9a-fA-F]{2}){5}\b")
_TLDS = r"(?:com|net|org|edu|gov|mil|io|info|biz|local|localdomain|internal|lan|arpa)"
_HAS_TLD = re.compile(r"\." + _TLDS + r"\b", re.IGNORECASE)
_HOST = re.compile(r"(?<![\w\-.])(?:[A-Za-z0-9\-]+\.)+" + _TLDS + r"(?:\.[A-Za-z]{2})?\b", re.IGNORECASE)
# A word holding a slash or backslash is a path (file, URL path, registry key, package/class).
_PATH = re.compile(r"""(?<![^\s'"])[^\s'"]*[/\\][^\s'"]*""")
# Any identifier-like word holding a digit: numbers, versions, times, hex, UUIDs, IPs, ids such as blk_-42 or ssh2.
_IDENTIFIER = re.compile(r"(?<![\w\-.])[\w\-.]*\d[\w\-.]*")
_UNIT = re.compile(r"(?:[KMGTP]i?B|B|bytes|ms|us|µs|ns|s|sec|secs|min|mins|h)(?=[^\w]*$)", re.IGNORECASE)
_NO_LETTER = re.compile(r"[^A-Za-z]*")


def mask(message: str) -> str:
    """Replace the generic variable values in ``message`` that can span or depend on context with ``<*>``.

    The word-level rules (paths, identifiers holding digits, units) run in :func:`tokenize`.
    """
    # The substring guards keep the common case cheap: most lines need none of these rules.
    if "://" in message:
        message = _URL.sub(WILDCARD, message)
    if "=" in message:
        message = _KEY_VALUE.sub("=" + WILDCARD, message)
    if '"' in message:
        message = _QUOTED.sub('"' + WILDCARD + '"', message)
    if message.count(":") >= 5 or message.count("-") >= 5:
        message = _MAC.sub(WILDCARD, message)
    if _HAS_TLD.search(message):
        message = _HOST.sub(WILDCARD, message)
    return message


def tokenize(message: str) -> list[str]:
    """Split a message into masked tokens.

    A token left without letters (``<*>:<*>``, ``(<*>)``) is a plain ``<*>``, a unit after a value (``9.2 KB``) is
    part of the value, and a run of ``<*>`` is one ``<*>`` so that lists of values of any length look alike.
    """
    tokens: list[str] = []
    previous = ""
    for word in mask(message).split():
        token = word
        if previous == WILDCARD and len(word) <= 6 and _UNIT.match(word):
            continue
        if not word.isalpha():
            if "/" in word or "\\" in word:
                token = _PATH.sub(WILDCARD, token)
            token = _IDENTIFIER.sub(WILDCARD, token)
            if WILDCARD in token and _NO_LETTER.fullmatch(token.replace(WILDCARD, "")):
                token = WILDCARD
        if token == previous and token == WILDCARD:
            continue
        tokens.append(token)
        previous = token
    return tokens
