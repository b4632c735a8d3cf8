"""Model replies become changes only when every block is well-formed, every path is safe and every SEARCH matches
exactly once; otherwise the error is a report the model can act on."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from generators.codegen.edit_apply import Change, apply_reply, check_path, nearest_lines
from generators.codegen.edits import REPLY_FORMAT, EditBlock, FileBlock, Writable, parse_reply
from generators.errors import EditConflictError, EditError, GeneratorError, ReplyFormatError, UnsafeReplyPathError

STORE = """\
\"\"\"A store.\"\"\"


def load(key: str) -> str:
    \"\"\"Load one value.\"\"\"
    value = _read(key)
    return value.strip()


def save(key: str, value: str) -> None:
    \"\"\"Save one value.\"\"\"
    _write(key, value)
"""


def edit(path: str, search: str, replace: str) -> str:
    return f"{path}\n```python\n<<<<<<< SEARCH\n{search}=======\n{replace}>>>>>>> REPLACE\n```\n"


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    (tmp_path / "components").mkdir()
    (tmp_path / "tests").mkdir()
    (tmp_path / "components" / "store.py").write_text(STORE, encoding="utf-8")
    return tmp_path


def test_whole_files_are_parsed_with_paths_and_order() -> None:
    reply = (
        "Here is the component.\n\ncomponents/cache.py\n```python\nimport os\n\n\nX = 1\n```\n\n"
        "**tests/test_cache.py**\n```python\ndef test_x() -> None:\n    assert True\n```\n"
    )
    parsed = parse_reply(reply)
    assert parsed.blocks == (
        FileBlock(path="components/cache.py", content="import os\n\n\nX = 1\n", line=4),
        FileBlock(path="tests/test_cache.py", content="def test_x() -> None:\n    assert True\n", line=12),
    )
    assert parsed.paths == ["components/cache.py", "tests/test_cache.py"]


def test_a_longer_fence_keeps_backticks_inside_the_file_and_path_attribute_is_read() -> None:
    content = 'DOC = """\n```\nexample\n```\n"""\n'
    parsed = parse_reply(f"````python path=components/doc.py\n{content}````\n")
    assert parsed.blocks == (FileBlock(path="components/doc.py", content=content, line=1),)


def test_edit_blocks_are_numbered_across_the_reply() -> None:
    reply = (
        "components/a.py\n```python\n<<<<<<< SEARCH\nx = 1\n=======\nx = 2\n>>>>>>> REPLACE\n\n"
        "<<<<<<< SEARCH\ny = 1\n=======\n>>>>>>> REPLACE\n```\n" + edit("components/b.py", "z\n", "w\n")
    )
    blocks = parse_reply(reply).blocks
    assert blocks == (
        EditBlock(path="components/a.py", search="x = 1\n", replace="x = 2\n", number=1, line=3),
        EditBlock(path="components/a.py", search="y = 1\n", replace="", number=2, line=9),
        EditBlock(path="components/b.py", search="z\n", replace="w\n", number=3, line=16),
    )


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("Sorry, I cannot help with that.", "contains no file or edit blocks"),
        ("components/a.py\n```python\nx = 1\n", "opened on line 2 of your reply is never closed"),
        ("Here you go:\n```python\nx = 1\n```\n", "on line 2 of your reply has no path line"),
        ("```bash\npytest\n```\n", "has no path line"),
        ("components/a.py\n```\n<<<<<<< SEARCH\nx = 1\n>>>>>>> REPLACE\n```\n", "'=======' line"),
        ("components/a.py\n```\n<<<<<<< SEARCH\nx = 1\n=======\nx = 2\n```\n", "'>>>>>>> REPLACE' line is missing"),
        (
            "components/a.py\n```\n<<<<<<< SEARCH\na\n=======\nb\n>>>>>>> REPLACE\nstray text\n```\n",
            "expected '<<<<<<< SEARCH' but found 'stray text'",
        ),
    ],
)
def test_malformed_replies_are_reported_for_the_model(reply: str, expected: str) -> None:
    with pytest.raises(ReplyFormatError) as caught:
        parse_reply(reply)
    assert expected in str(caught.value)
    assert isinstance(caught.value, EditError)
    assert isinstance(caught.value, GeneratorError)


def test_edits_apply_exactly_and_in_order(workspace: Path) -> None:
    reply = edit(
        "components/store.py", "    value = _read(key)\n    return value.strip()\n", "    return _read(key).strip()\n"
    ) + edit("components/store.py", "    return _read(key).strip()\n", "    return _read(key).strip().lower()\n")
    change = apply_reply(reply, {"components/store.py": STORE}, workspace)
    assert change.files["components/store.py"] == STORE.replace(
        "    value = _read(key)\n    return value.strip()\n", "    return _read(key).strip().lower()\n"
    )
    assert change.modified == ["components/store.py"]
    assert change.created == []
    assert change.original == {"components/store.py": STORE}


def test_a_new_file_can_be_created_and_then_edited(workspace: Path) -> None:
    reply = "components/new.py\n```python\nA = 1\nB = 2\n```\n" + edit("components/new.py", "B = 2\n", "B = 3\n")
    change = apply_reply(reply, {}, workspace)
    assert dict(change.files) == {"components/new.py": "A = 1\nB = 3\n"}
    assert change.created == ["components/new.py"]
    assert change.modified == []


def test_unmatched_search_names_the_file_block_and_nearest_lines(workspace: Path) -> None:
    # Indentation differs from the file: lines 10-12 of STORE are the near miss.
    search = 'def save(key: str, value: str) -> None:\n  """Save one value."""\n  _write(key, value)\n'
    reply = edit("components/store.py", "def load(key: str) -> str:\n", "def load(key: str) -> bytes:\n")
    reply += edit("components/store.py", search, "pass\n")
    with pytest.raises(EditConflictError) as caught:
        apply_reply(reply, {"components/store.py": STORE}, workspace)
    error = caught.value
    assert [(f.path, f.number) for f in error.failures] == [("components/store.py", 2)]
    message = str(error)
    assert message.startswith("1 of 2 edits in your reply could not be applied, so none were applied.")
    assert "Edit 2 (components/store.py, line 11 of your reply): the SEARCH text matches nothing" in message
    assert "Did you mean lines 10-12?" in message
    assert '   10 | def save(key: str, value: str) -> None:\n   11 |     """Save one value."""\n' in message


def test_a_search_matching_twice_is_ambiguous(workspace: Path) -> None:
    text = "a = 1\nb = 2\na = 1\n"
    with pytest.raises(EditConflictError, match=r"matches 2 places \(lines 1, 3\)\. Include more surrounding lines"):
        apply_reply(edit("components/store.py", "a = 1\n", "a = 9\n"), {"components/store.py": text}, workspace)


def test_an_edit_already_made_is_flagged_and_an_unknown_file_is_refused(workspace: Path) -> None:
    reply = edit("components/store.py", "    return value.upper()\n", "    return value.strip()\n")
    reply += edit("components/other.py", "x\n", "y\n")
    with pytest.raises(EditConflictError) as caught:
        apply_reply(reply, {"components/store.py": STORE}, workspace)
    first, second = caught.value.failures
    assert "REPLACE text is already in the file" in first.report
    assert "components/other.py is not a file you were shown" in second.report
    assert "files you may edit: components/store.py" in second.report


def test_whole_file_over_an_unshown_existing_file_is_refused(workspace: Path) -> None:
    with pytest.raises(UnsafeReplyPathError, match="already exists in the workspace but was not shown"):
        apply_reply("components/store.py\n```python\nX = 1\n```\n", {}, workspace)


def test_whole_file_over_a_shown_file_is_a_modification(workspace: Path) -> None:
    change = apply_reply("components/store.py\n```python\nX = 1\n```\n", {"components/store.py": STORE}, workspace)
    assert change.modified == ["components/store.py"]
    assert change.files["components/store.py"] == "X = 1\n"


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("../evil.py", "'..'"),
        ("components/../../evil.py", "'..'"),
        ("/etc/passwd", "relative path"),
        ("C:/evil.py", "relative path"),
        ("components\\evil.py", "relative path"),
        ("server/app.py", "outside the folders you may write to"),
        ("components", "outside the folders you may write to"),
        ("components//a.py", "empty segments"),
        ("", "relative path"),
    ],
)
def test_unsafe_paths_are_refused(workspace: Path, path: str, expected: str) -> None:
    with pytest.raises(UnsafeReplyPathError) as caught:
        check_path(path, workspace)
    assert expected in str(caught.value)


def test_symlinks_out_of_the_workspace_or_root_are_refused(
    workspace: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    outside = tmp_path_factory.mktemp("outside")
    os.symlink(outside, workspace / "components" / "linked")
    os.symlink(workspace / "tests", workspace / "components" / "to_tests")
    for path in ("components/linked/evil.py", "components/to_tests/x.py"):
        with pytest.raises(UnsafeReplyPathError, match="resolves through a symlink"):
            check_path(path, workspace)
    reply = "components/linked/evil.py\n```python\nX = 1\n```\n"
    with pytest.raises(UnsafeReplyPathError):
        apply_reply(reply, {}, workspace)
    assert list(outside.iterdir()) == []


def test_a_symlinked_root_is_refused(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    outside = tmp_path_factory.mktemp("elsewhere")
    os.symlink(outside, tmp_path / "components")
    with pytest.raises(UnsafeReplyPathError, match="resolves through a symlink"):
        check_path("components/a.py", tmp_path)


def test_allowed_roots_are_a_parameter(workspace: Path) -> None:
    assert check_path("components/acme/cache.py", workspace, ["components/acme/"]) == "components/acme/cache.py"
    with pytest.raises(UnsafeReplyPathError, match=r"outside the folders you may write to \(components/acme/\)"):
        check_path("components/other/cache.py", workspace, ["components/acme/"])
    with pytest.raises(UnsafeReplyPathError):
        apply_reply("tests/test_x.py\n```python\nX = 1\n```\n", {}, workspace, ["components/"])


def test_diff_renders_created_and_modified_files() -> None:
    change = Change(
        files={"components/a.py": "x = 2\ny = 1\n", "components/new.py": "z = 1"},
        original={"components/a.py": "x = 1\ny = 1\n"},
    )
    assert change.diff() == (
        "--- a/components/a.py\n+++ b/components/a.py\n@@ -1,2 +1,2 @@\n-x = 1\n+x = 2\n y = 1\n"
        "--- /dev/null\n+++ b/components/new.py\n@@ -0,0 +1 @@\n+z = 1\n\\ No newline at end of file\n"
    )


def test_then_composes_retry_rounds_from_the_original() -> None:
    first = Change(
        files={"components/a.py": "x = 2\n", "components/n.py": "n\n"}, original={"components/a.py": "x = 1\n"}
    )
    second = Change(
        files={"components/a.py": "x = 3\n", "components/b.py": "b = 2\n", "components/n.py": "m\n"},
        original={"components/a.py": "x = 2\n", "components/b.py": "b = 1\n", "components/n.py": "n\n"},
    )
    both = first.then(second)
    assert dict(both.files) == {"components/a.py": "x = 3\n", "components/b.py": "b = 2\n", "components/n.py": "m\n"}
    assert dict(both.original) == {"components/a.py": "x = 1\n", "components/b.py": "b = 1\n"}
    assert both.created == ["components/n.py"]


def test_nearest_lines_returns_none_when_nothing_is_close() -> None:
    assert nearest_lines(STORE, "completely unrelated text about bananas\n") is None
    assert nearest_lines(STORE, 'def load(key: str) -> str:\n    """Load a value."""\n') == (
        4,
        'def load(key: str) -> str:\n    """Load one value."""\n',
    )


def test_the_documented_format_parses_once_a_real_path_replaces_the_placeholder() -> None:
    """The example in the format text is a valid reply once its placeholder names a file; echoed as it is, it writes
    nothing (a small model that copies the example must not create a plausible stray module)."""
    example = REPLY_FORMAT.split("whole file:\n", 1)[1].split("- Changes", 1)[0]
    assert parse_reply(example.replace("<path>", "components/cache.py")).blocks == (
        FileBlock(path="components/cache.py", content="<complete file content>\n", line=2),
    )
    with pytest.raises(ReplyFormatError, match="no path line"):
        parse_reply(example)
    assert "example.py" not in REPLY_FORMAT


def test_nearest_lines_finds_the_near_miss_in_a_long_repetitive_file() -> None:
    lines = [f"    value_{i} = compute(value_{i - 1}, {i})  # step {i}\n" for i in range(500)]
    typo = "".join(line.replace("compute", "Compute") for line in lines[300:320])
    assert nearest_lines("".join(lines), typo) == (301, "".join(lines[300:320]))
    reindented = "".join(line.replace("    ", "  ") for line in lines[100:140])
    assert nearest_lines("".join(lines), reindented) == (101, "".join(lines[100:140]))


# --- A block without its path line, taken by its content when that leaves no doubt --------------------------------

MODULE_AND_TESTS = Writable(paths=["components/store.py", "tests/test_store.py"], files={"components/store.py": STORE})


def test_a_path_in_the_angle_brackets_of_the_format_placeholder_is_the_path() -> None:
    """The 1.5B model wrote the path where the format shows ``<path>``, brackets and all, in every round of two tasks;
    the placeholder itself is still no path."""
    parsed = parse_reply("<components/store.py>\n```python\nX = 1\n```\n")
    assert parsed.blocks == (FileBlock(path="components/store.py", content="X = 1\n", line=2),)
    with pytest.raises(ReplyFormatError, match="has no path line"):
        parse_reply("<path>\n```python\nX = 1\n```\n")


def test_a_bare_whole_file_is_the_module_or_the_test_file_by_what_it_defines() -> None:
    """Small models open their answer with a bare block: a file defining pytest tests is the test file, any other
    the module, when the task lets the model write one of each."""
    tests = "from components.store import load\n\n\ndef test_load() -> None:\n    assert load\n"
    reply = f"Here is the fix:\n```python\n{STORE}```\n\nAnd its tests:\n```\n{tests}```\n"
    parsed = parse_reply(reply, MODULE_AND_TESTS)
    assert [(b.path, b.line) for b in parsed.blocks] == [("components/store.py", 2), ("tests/test_store.py", 18)]
    assert parsed.guessed == ("line 2: components/store.py", "line 18: tests/test_store.py")
    with pytest.raises(ReplyFormatError, match="on line 2 of your reply has no path line"):
        parse_reply(reply)  # without the files the reply may write, nothing is guessed


def test_a_bare_edit_block_is_for_the_one_file_its_search_text_is_in(workspace: Path) -> None:
    reply = (
        "```python\n<<<<<<< SEARCH\n    _write(key, value)\n=======\n"
        "    _write(key, value.strip())\n>>>>>>> REPLACE\n```"
    )
    change = apply_reply(reply, {"components/store.py": STORE}, workspace, writable=MODULE_AND_TESTS)
    assert change.files["components/store.py"] == STORE.replace("_write(key, value)", "_write(key, value.strip())")
    with pytest.raises(ReplyFormatError, match="has no path line"):  # a SEARCH text found in no file
        parse_reply(reply.replace("_write(key, value)\n=", "_gone()\n="), MODULE_AND_TESTS)


@pytest.mark.parametrize(
    ("reply", "writable", "expected"),
    [
        # two modules may be written: a bare module could be either
        ("```python\nX = 1\n```\n", Writable(paths=["components/a.py", "components/b.py"]), "has no path line"),
        # a shell block is never a module
        ("```bash\npytest\n```\n", MODULE_AND_TESTS, "has no path line"),
        # the format's placeholder echoed: a path was meant, and none given
        ("<path>\n```python\nX = 1\n```\n", MODULE_AND_TESTS, "on line 2 of your reply has no path line"),
        # a bare example after the module would overwrite it
        (
            "components/store.py\n```python\nX = 1\n```\nUsage:\n```python\nload('k')\n```\n",
            MODULE_AND_TESTS,
            "content can only be components/store.py, which your reply also sends as another block",
        ),
    ],
)
def test_a_bare_block_whose_file_cannot_be_told_is_still_an_error(
    reply: str, writable: Writable, expected: str
) -> None:
    with pytest.raises(ReplyFormatError) as caught:
        parse_reply(reply, writable)
    assert expected in str(caught.value)
