"""Prompts carry the workspace overview, the closest modules, the goals, the standards and the reply format, and
stay within their character budget however large the workspace is."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from generators.codegen.edit_apply import apply_reply
from generators.codegen.edits import REPLY_FORMAT
from generators.codegen.overview import scan_workspace, tokens
from generators.codegen.prompts import (
    Goal,
    PromptBudgetError,
    build_generation_prompt,
    build_improvement_prompt,
    build_retry_message,
)

CACHE = '''"""An LRU cache for lookups."""

__all__ = ["LruCache"]


class LruCache:
    """Least recently used cache with a fixed capacity."""

    def get(self, key: str) -> str | None:
        """Return the cached value of key, refreshing its recency."""
        return None


def _evict() -> None:
    pass
'''

PARSER = '''"""Parse CSV rows into records."""


def parse_rows(text: str) -> list[list[str]]:
    """Split text into rows of cells."""
    return [line.split(",") for line in text.splitlines()]


async def stream_rows(text: str) -> list[list[str]]:
    """Rows, for async callers."""
    return parse_rows(text)


class _Hidden:
    pass
'''


def write(root: Path, path: str, text: str) -> None:
    target = root / path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    write(tmp_path, "components/cache.py", CACHE)
    write(tmp_path, "components/acme/parser.py", PARSER)
    write(tmp_path, "components/broken.py", "def oops(:\n")
    write(tmp_path, "components/__pycache__/cache.cpython-311.py", "SECRET = 1\n")
    write(
        tmp_path,
        "tests/test_cache.py",
        "from components.cache import LruCache\n\n\ndef test_get() -> None:\n    pass\n",
    )
    write(tmp_path, "server/app.py", "def not_a_component() -> None:\n    pass\n")
    return tmp_path


GOALS = [Goal("latency_p95_ms", "lower", 180.0, "p95 rose 40 % after the last deploy", unit="ms")]


def test_overview_lists_public_names_found_with_ast(workspace: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    outside = tmp_path_factory.mktemp("outside")
    write(outside, "leak.py", "def leaked() -> None:\n    pass\n")
    os.symlink(outside / "leak.py", workspace / "components" / "leak.py")
    overview = scan_workspace(workspace)
    assert [module.path for module in overview.modules] == [
        "components/broken.py",
        "components/cache.py",
        "components/acme/parser.py",
        "tests/test_cache.py",
    ]
    by_path = {module.path: module for module in overview.modules}
    assert by_path["components/cache.py"].names == ("LruCache",)
    assert by_path["components/acme/parser.py"].names == ("def parse_rows", "async def stream_rows")
    assert by_path["components/broken.py"].error == "syntax error on line 1"
    text = overview.render(2000)
    assert "components/acme/\n  parser.py [15 lines]: def parse_rows, async def stream_rows\n" in text
    assert "  broken.py [1 lines]: (syntax error on line 1)\n" in text
    assert "server" not in text
    assert "leak" not in text


def test_excluded_folders_never_reach_the_prompt(workspace: Path) -> None:
    """Another tenant's code is left out of the overview and the patterns when the caller excludes its folder."""
    overview = scan_workspace(workspace, exclude=["components/acme/"])
    assert [module.path for module in overview.modules] == [
        "components/broken.py",
        "components/cache.py",
        "tests/test_cache.py",
    ]
    prompt = build_generation_prompt(overview, "parse CSV rows", component_type="parser", target_path="components/p.py")
    assert "parse_rows" not in prompt.user


def test_closest_modules_by_shared_words(workspace: Path) -> None:
    overview = scan_workspace(workspace)
    assert tokens("LruCache get_value") == {"lru", "cache", "get", "value"}
    assert [m.path for m in overview.closest("parse CSV rows from a stream", 1)] == ["components/acme/parser.py"]
    closest = overview.closest("a cache with LRU eviction", 2, exclude=["components/cache.py"])
    assert [m.path for m in closest] == ["tests/test_cache.py"]


def test_generation_prompt_carries_every_section(workspace: Path) -> None:
    prompt = build_generation_prompt(
        scan_workspace(workspace),
        "A TTL cache: entries expire after a configurable number of seconds.",
        component_type="cache",
        target_path="components/acme/ttl_cache.py",
        context="Used by the pricing service.",
        goals=GOALS,
        tenant_id="acme",
    )
    assert REPLY_FORMAT in prompt.system
    assert "Forbidden: eval, exec" in prompt.system
    assert "tenant 'acme'" in prompt.system
    assert "No network access" in prompt.system
    user = prompt.user
    assert "Write a new cache component at components/acme/ttl_cache.py" in user
    assert "entries expire after a configurable number of seconds" in user
    assert "Used by the pricing service." in user
    assert "- Lower latency_p95_ms (now 180 ms): p95 rose 40 % after the last deploy\n" in user
    assert "## Workspace overview (components/, tests/)\n" in user
    assert "  cache.py [15 lines]: LruCache\n" in user
    # The closest module is shown whole, fenced under its path, as a pattern.
    assert f"components/cache.py\n```python\n{CACHE}```\n" in user
    assert prompt.messages() == [
        {"role": "system", "content": prompt.system},
        {"role": "user", "content": prompt.user},
    ]


def test_improvement_prompt_shows_files_whole_and_not_as_patterns(workspace: Path) -> None:
    prompt = build_improvement_prompt(
        scan_workspace(workspace),
        {"components/cache.py": CACHE},
        "Make get O(1).",
        goals=GOALS,
        allow_network=True,
    )
    assert "No network access" not in prompt.system
    assert f"## Files to edit (current content)\ncomponents/cache.py\n```python\n{CACHE}```\n" in prompt.user
    assert prompt.user.count("class LruCache:") == 1
    # A reply built from the shown text applies to it.
    reply = "components/cache.py\n```python\n<<<<<<< SEARCH\n        return None\n=======\n        return key\n"
    change = apply_reply(reply + ">>>>>>> REPLACE\n```\n", {"components/cache.py": CACHE}, workspace)
    assert change.modified == ["components/cache.py"]


def test_large_workspace_stays_within_budget(tmp_path: Path) -> None:
    body = "".join(f"def handler_{i}(value: int) -> int:\n    return value + {i}\n\n\n" for i in range(60))
    for n in range(300):
        write(tmp_path, f"components/group{n % 12}/module_{n}.py", f'"""Module {n}: cache handler."""\n\n{body}')
    overview = scan_workspace(tmp_path)
    budget = 20_000
    prompt = build_generation_prompt(
        overview,
        "A cache handler. " * 2000,
        component_type="cache",
        target_path="components/c.py",
        goals=GOALS * 500,
        budget_chars=budget,
    )
    assert prompt.chars <= budget
    assert "more modules\n" in prompt.user
    assert "characters left out)" in prompt.user
    assert REPLY_FORMAT in prompt.system
    assert "components/group0/module_0.py\n```python\n" in prompt.user
    improvement = build_improvement_prompt(
        overview,
        {"components/group0/module_0.py": overview.source("components/group0/module_0.py")},
        "Faster.",
        budget_chars=budget,
    )
    assert improvement.chars <= budget


def test_files_too_large_for_the_budget_are_refused(workspace: Path) -> None:
    with pytest.raises(PromptBudgetError, match="do not fit in the budget of 8000 characters"):
        build_improvement_prompt(
            scan_workspace(workspace), {"components/big.py": "x = 1\n" * 2000}, "Faster.", budget_chars=8000
        )


def test_scan_stops_at_the_module_limit(tmp_path: Path) -> None:
    for n in range(5):
        write(tmp_path, f"components/m{n}.py", "X = 1\n")
    overview = scan_workspace(tmp_path, max_modules=3)
    assert len(overview.modules) == 3
    assert overview.truncated
    assert "scan stopped at the module limit" in overview.render(5000)


def test_retry_message_carries_the_errors_and_current_files_within_budget() -> None:
    message = build_retry_message(
        ["Edit 1 (components/a.py): the SEARCH text matches nothing", "mypy: components/a.py:3: error " * 2000],
        round_number=2,
        max_rounds=3,
        current_files={"components/a.py": "x = 1\n"},
        budget_chars=6000,
    )
    assert len(message) <= 6000
    assert "(round 2 of 3)" in message
    assert "Problem 1:\nEdit 1 (components/a.py): the SEARCH text matches nothing\n" in message
    assert "Problem 2:\nmypy: components/a.py:3: error" in message
    assert "characters left out)" in message
    assert "your SEARCH texts must match these):\ncomponents/a.py\n```python\nx = 1\n```\n" in message
    with pytest.raises(PromptBudgetError):
        build_retry_message(["x"], round_number=1, max_rounds=3, current_files={"a": "y" * 9000}, budget_chars=6000)
