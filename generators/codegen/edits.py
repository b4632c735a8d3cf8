"""Parse a model's reply into whole files and SEARCH/REPLACE edits.

The reply format (``REPLY_FORMAT`` is the text the prompts give the model) has one rule: every fenced code block
is preceded by a line that holds only the file's path. A block whose first line is ``<<<<<<< SEARCH`` holds
edits to that existing file; any other block is the complete content of the file::

    components/cache.py
    ```python
    <whole file>
    ```

    components/store.py
    ```python
    <<<<<<< SEARCH
    <lines copied exactly from the file>
    =======
    <the lines that replace them>
    >>>>>>> REPLACE
    ```

A fence closes on a line of at least as many backticks as opened it, so a file that itself contains ```` ``` ````
is sent inside a longer fence. Anything the parser cannot read raises ``ReplyFormatError`` with the line number
and what to do; no block is ever skipped. Given the files the reply may write, a block without its path line is
taken as the one file its content can only be for (``generators.codegen.reply_paths``); the reply then says so in
``ParsedReply.guessed``. Applying the blocks is ``generators.codegen.edit_apply``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from generators.codegen.reply_paths import Writable, guess_path
from generators.errors import ReplyFormatError

__all__ = ["REPLY_FORMAT", "EditBlock", "FileBlock", "ParsedReply", "ReplyFormatError", "Writable", "parse_reply"]

SEARCH_MARKER = "<<<<<<< SEARCH"
DIVIDER_MARKER = "======="
REPLACE_MARKER = ">>>>>>> REPLACE"

_FENCE_OPEN = re.compile(r"^\s{0,3}(`{3,})([^`]*)$")
_SEARCH = re.compile(r"^<{5,9} ?SEARCH\s*$")
_DIVIDER = re.compile(r"^={5,9}\s*$")
_REPLACE = re.compile(r"^>{5,9} ?REPLACE\s*$")
_PATH_ATTR = re.compile(r"(?:^|\s)(?:path|file)=([^\s]+)")
_PATH_LIKE = re.compile(r"^[\w.\-/\\:]+$")
# A line of one word is an attempt at a path line (a placeholder, a bare name); prose has blanks in it, and a one-word
# heading ("Usage:") ends with a colon.
_ONE_WORD = re.compile(r"^\S*[^\s:]$")
# Decorations models put around a path line: a heading, bold, backticks, "File:", a trailing colon, and the angle
# brackets of the format's own ``<path>`` placeholder (Qwen2.5-Coder 1.5B wrote ``<components/x.py>``; a bare
# ``<path>`` is still no path).
_PATH_DECORATION = re.compile(r"^(?:#+\s*)?(?:file(?:name)?\s*:\s*)?[`*<]*(?P<path>.*?)[`*>]*:?$", re.IGNORECASE)

# The example paths are a placeholder, never a plausible file: a model that echoes the example writes nothing.
REPLY_FORMAT = f"""\
Reply format (followed exactly; anything else is rejected):
- Every code block is preceded by a line that holds only the file's path relative to the workspace root, one of
  the paths the task names (written where <path> stands below). Do not write any other code blocks (no shell
  commands, no examples).
- A new file, or a file you rewrite completely: the path line, then a fenced block with the whole file:
<path>
```python
<complete file content>
```
- Changes to an existing file: the path line, then a fenced block of one or more SEARCH/REPLACE edits:
<path>
```python
{SEARCH_MARKER}
<lines copied exactly from the current file, including indentation and blank lines>
{DIVIDER_MARKER}
<the lines that replace them>
{REPLACE_MARKER}
```
- A SEARCH text must match exactly one place in the file: include enough surrounding lines to make it unique,
  and keep it short otherwise. Edits to one file apply in order, each to the result of the previous one.
  To delete lines leave the REPLACE part empty.
- If a file's content contains a line of three backticks, open and close its block with four backticks.
"""


@dataclass(frozen=True)
class FileBlock:
    """A whole file: ``content`` replaces or creates ``path``. ``line`` is where its fence opens in the reply."""

    path: str
    content: str
    line: int


@dataclass(frozen=True)
class EditBlock:
    """One SEARCH/REPLACE edit of ``path``; ``number`` counts the edits of the reply from 1, ``line`` is its start."""

    path: str
    search: str
    replace: str
    number: int
    line: int


@dataclass(frozen=True)
class ParsedReply:
    """The blocks of a reply in the order they appear; ``guessed`` says which blocks had no path line and the file
    their content showed them to be for (``"line 1: components/x.py"``)."""

    blocks: tuple[FileBlock | EditBlock, ...]
    guessed: tuple[str, ...] = ()

    @property
    def paths(self) -> list[str]:
        """Every path the reply touches, first appearance first."""
        return list(dict.fromkeys(block.path for block in self.blocks))


def parse_reply(reply: str, writable: Writable | None = None) -> ParsedReply:
    """Read every file and edit block of ``reply``; ``writable`` (the files the reply may write) lets a block without
    a path line be taken as the one file it can only be for.

    Raises:
        ReplyFormatError: the reply has no blocks, a fence is not closed, a block has no path line (and its file
            cannot be told), or an edit block lacks a marker. The message names the line and says how to fix it.
    """
    lines = reply.replace("\r\n", "\n").split("\n")
    blocks: list[FileBlock | EditBlock] = []
    guessed: dict[int, str] = {}
    index = 0
    previous_end = 0  # a path line must come after the previous block
    while index < len(lines):
        opened = _FENCE_OPEN.match(lines[index])
        if not opened:
            index += 1
            continue
        fence, info = opened.group(1), opened.group(2)
        close = _find_close(lines, index + 1, len(fence))
        if close is None:
            raise ReplyFormatError(
                f"The code block opened on line {index + 1} of your reply is never closed. Close every block "
                f"with a line of {len(fence)} backticks (use a longer fence if the file contains ```)."
            )
        path = _path_for(lines, index, previous_end, info)
        body = lines[index + 1 : close]
        first = next((line for line in body if line.strip()), "")
        found: list[FileBlock | EditBlock]
        if _SEARCH.match(first.strip()):
            found = [*_edit_blocks(path or "", body, index + 2, sum(isinstance(b, EditBlock) for b in blocks))]
        else:
            found = [FileBlock(path=path or "", content=_join(body), line=index + 1)]
        if path is None:
            path = _guess(writable, info, found, index)
            guessed[index + 1] = path
            found = [replace(block, path=path) for block in found]
        blocks.extend(found)
        previous_end = close + 1
        index = close + 1
    if not blocks:
        raise ReplyFormatError(
            "Your reply contains no file or edit blocks. Send each file or edit as a path line followed by a "
            "fenced code block, as the reply format describes."
        )
    _check_guesses(blocks, guessed)
    return ParsedReply(blocks=tuple(blocks), guessed=tuple(f"line {n}: {p}" for n, p in guessed.items()))


def _guess(writable: Writable | None, info: str, found: list[FileBlock | EditBlock], fence_line: int) -> str:
    """The file a block without a path line is for, judged by its content; else the no-path-line error."""
    first = found[0]
    search = first.search if isinstance(first, EditBlock) else None
    body = first.content if isinstance(first, FileBlock) else ""
    path = guess_path(writable, info, body, search) if writable is not None else None
    if path is None:
        raise _no_path(fence_line)
    return path


def _check_guesses(blocks: list[FileBlock | EditBlock], guessed: dict[int, str]) -> None:
    """A guessed whole file must be the only whole file of its path: else the guess would overwrite a file the
    reply names, or be overwritten by it."""
    whole = [block for block in blocks if isinstance(block, FileBlock)]
    for block in whole:
        if guessed.get(block.line) == block.path and sum(b.path == block.path for b in whole) > 1:
            raise ReplyFormatError(
                f"The code block on line {block.line} of your reply has no path line, and its content can only be "
                f"{block.path}, which your reply also sends as another block. Put the file's path alone on the line "
                "just before every code block, and send each file once."
            )


def _find_close(lines: list[str], start: int, width: int) -> int | None:
    for index in range(start, len(lines)):
        stripped = lines[index].strip()
        if len(stripped) >= width and set(stripped) == {"`"}:
            return index
    return None


def _path_for(lines: list[str], fence_line: int, previous_end: int, info: str) -> str | None:
    """The block's path from its path line (or ``path=`` in the fence label); ``None`` when the lines before it are
    prose or nothing. A one-word line that is no path (an echoed ``<path>``) is an error: a path was meant."""
    attribute = _PATH_ATTR.search(info)
    if attribute:
        return attribute.group(1).strip("`'\"")
    for index in range(fence_line - 1, previous_end - 1, -1):
        candidate = lines[index].strip()
        if not candidate:
            continue
        decoration = _PATH_DECORATION.match(candidate)
        path = decoration.group("path").strip() if decoration else candidate
        if path and _PATH_LIKE.match(path) and ("/" in path or "." in path):
            return path
        if _ONE_WORD.match(candidate):
            raise _no_path(fence_line)
        break
    return None


def _no_path(fence_line: int) -> ReplyFormatError:
    return ReplyFormatError(
        f"The code block on line {fence_line + 1} of your reply has no path line before it. Put the file's path "
        "(one of the paths the task names) alone on the line just before every code block, and send no other code "
        "blocks."
    )


def _edit_blocks(path: str, body: list[str], first_line: int, done: int) -> list[EditBlock]:
    """Split a fence's lines into SEARCH/REPLACE edits; ``first_line`` is the reply line of ``body[0]``."""
    edits: list[EditBlock] = []
    index = 0
    while index < len(body):
        if not body[index].strip():
            index += 1
            continue
        number = done + len(edits) + 1
        where = f"Edit {number} ({path}, line {first_line + index} of your reply)"
        if not _SEARCH.match(body[index].strip()):
            raise ReplyFormatError(
                f"{where}: expected '{SEARCH_MARKER}' but found {body[index].strip()[:80]!r}. An edit block holds "
                f"only SEARCH/REPLACE edits; send whole files in their own block."
            )
        divider = _next_marker(body, index + 1, _DIVIDER, stop=_SEARCH)
        if divider is None:
            raise ReplyFormatError(f"{where}: the '{DIVIDER_MARKER}' line between SEARCH and REPLACE is missing.")
        end = _next_marker(body, divider + 1, _REPLACE, stop=_SEARCH)
        if end is None:
            raise ReplyFormatError(f"{where}: the closing '{REPLACE_MARKER}' line is missing.")
        edits.append(
            EditBlock(
                path=path,
                search=_join(body[index + 1 : divider]),
                replace=_join(body[divider + 1 : end]),
                number=number,
                line=first_line + index,
            )
        )
        index = end + 1
    return edits


def _next_marker(body: list[str], start: int, marker: re.Pattern[str], *, stop: re.Pattern[str]) -> int | None:
    for index in range(start, len(body)):
        stripped = body[index].strip()
        if marker.match(stripped):
            return index
        if stop.match(stripped):
            return None
    return None


def _join(lines: list[str]) -> str:
    return "".join(line + "\n" for line in lines)
