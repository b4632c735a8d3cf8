"""The risk of changing a module: what a change can break (its blast radius), not how bad the problem is.

A cycle acts on an opportunity only when this risk is within the caller's ``risk_tolerance``. Each factor gives a
level, and the risk is the highest of them:

* the server's own code (a module outside ``components/``, named by the server's self-analysis): **high** - a bad
  change breaks the server itself;
* importers - other workspace modules that import it (tests and benchmarks do not count: they protect it): 10 or
  more **high**, 3 or more **medium** - a change to what many depend on breaks them too;
* shared - it lives in a shared package (``components/shared``, ``components/common``): **medium** - every tenant
  runs it;
* untested - no ``tests/.../test_<stem>.py``: **medium** - nothing checks its behaviour before the deploy;
* rollbacks - a change of this component was rolled back in the last 30 days: **medium** - changes to it went wrong.

So a leaf module with tests and no recent rollback is **low**, however much its latency grew.
"""

from __future__ import annotations

import ast
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from generators.improvement.models import RISK_ORDER, Opportunity, Risk

logger = logging.getLogger(__name__)
MANY_IMPORTERS = 10  # importers from which a change is high risk
SOME_IMPORTERS = 3  # importers from which a change is medium risk
ROLLBACK_MEMORY_SECONDS = 30 * 86400
MAX_FILES = 5_000  # modules read per scan; beyond it the counts are of the part read (and say so)
MAX_FILE_BYTES = 1_000_000
MAX_NAMES = 5  # importers and tests named in the factors
_SKIPPED_DIRS = frozenset({".git", ".venv", "venv", "__pycache__", "node_modules", ".mypy_cache", ".pytest_cache"})
_NOT_IMPORTERS = frozenset({"tests", "benchmarks"})


@dataclass(frozen=True, slots=True)
class RiskAssessment:
    """The risk level, the figures behind it, and the reasons in words."""

    level: Risk
    factors: dict[str, Any]
    reasons: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class WorkspaceFacts:
    """What one scan of the workspace found: who imports which module, and which test files exist."""

    importers: dict[str, frozenset[str]]  # module name -> names of the modules that import it
    tests: dict[str, tuple[str, ...]]  # module stem -> its test files (workspace paths)
    truncated: bool  # more modules than MAX_FILES: the counts are of the part read


def assess(
    module: str,
    facts: WorkspaceFacts,
    *,
    own_code: bool,
    shared_packages: frozenset[str],
    rollbacks: int,
) -> RiskAssessment:
    """The risk of changing ``module`` (a workspace path such as ``components/slow_stats.py``)."""
    parts = PurePosixPath(module).parts
    importers = sorted(facts.importers.get(module_name(module), frozenset()))
    tests = facts.tests.get(PurePosixPath(module).stem, ())
    own = own_code or parts[0] != "components"
    shared = len(parts) > 2 and parts[0] == "components" and parts[1] in shared_packages
    found: list[tuple[Risk, str]] = []
    if own:
        found.append(("high", f"{module} is the server's own code"))
    if len(importers) >= SOME_IMPORTERS:
        level: Risk = "high" if len(importers) >= MANY_IMPORTERS else "medium"
        found.append((level, f"{len(importers)} workspace modules import it"))
    if shared:
        found.append(("medium", f"{module} is in a shared package"))
    if not tests:
        found.append(("medium", f"it has no tests (no tests/test_{PurePosixPath(module).stem}.py)"))
    if rollbacks:
        found.append(("medium", f"{rollbacks} change(s) of it rolled back in the last 30 days"))
    level = max((lvl for lvl, _ in found), key=RISK_ORDER.__getitem__, default="low")
    factors: dict[str, Any] = {
        "module": module,
        "own_code": own,
        "shared": shared,
        "importers": len(importers),
        "importer_examples": importers[:MAX_NAMES],
        "tests": list(tests[:MAX_NAMES]),
        "rollbacks_30d": rollbacks,
    }
    if facts.truncated:
        factors["scan_truncated"] = True
    reasons = tuple(why for _, why in found) or ("a leaf module with tests and no recent rollback",)
    return RiskAssessment(level, factors, reasons)


def assess_risks(
    workspace: Path,
    opportunities: list[Opportunity],
    *,
    locate: Callable[[Opportunity], str | None],
    rollbacks: Callable[[str], int],
    shared_packages: frozenset[str],
) -> list[tuple[Opportunity, str | None, RiskAssessment | None]]:
    """Each opportunity with its module (``None``: none in the workspace) and the risk of changing it. Blocking: one
    scan of the workspace for all of them."""
    located = [(opportunity, locate(opportunity)) for opportunity in opportunities]
    if not any(module for _, module in located):
        return [(opportunity, None, None) for opportunity in opportunities]
    facts = scan(workspace)
    rolled: dict[str, int] = {}
    out: list[tuple[Opportunity, str | None, RiskAssessment | None]] = []
    for opportunity, module in located:
        if module is None:
            out.append((opportunity, None, None))
            continue
        if opportunity.component not in rolled:
            rolled[opportunity.component] = rollbacks(opportunity.component)
        risk = assess(
            module,
            facts,
            own_code=opportunity.own_code,
            shared_packages=shared_packages,
            rollbacks=rolled[opportunity.component],
        )
        out.append((opportunity, module, risk))
    return out


def allowed(risk: Risk, tolerance: Risk) -> bool:
    return RISK_ORDER[risk] <= RISK_ORDER[tolerance]


def module_name(path: str) -> str:
    """``components/a/b.py`` -> ``components.a.b``; a package's ``__init__.py`` is the package."""
    parts = list(PurePosixPath(path).with_suffix("").parts)
    if parts and parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def scan(workspace: Path) -> WorkspaceFacts:
    """Read every Python module of the workspace once (at most MAX_FILES) for its imports and the test files."""
    importers: dict[str, set[str]] = {}
    tests: dict[str, list[str]] = {}
    truncated = False
    for count, path in enumerate(_python_files(workspace)):
        if count >= MAX_FILES:
            truncated = True
            break
        relative = path.relative_to(workspace).as_posix()
        name = PurePosixPath(relative).name
        if name.startswith("test_"):
            tests.setdefault(PurePosixPath(relative).stem.removeprefix("test_"), []).append(relative)
        if name.startswith("test_") or name == "conftest.py" or relative.split("/", 1)[0] in _NOT_IMPORTERS:
            continue
        importer = module_name(relative)
        for imported in _imports(path, importer, is_package=name == "__init__.py"):
            if imported != importer:
                importers.setdefault(imported, set()).add(importer)
    if truncated:
        logger.warning("risk scan of %s stopped after %d modules", workspace, MAX_FILES)
    return WorkspaceFacts(
        {k: frozenset(v) for k, v in importers.items()}, {k: tuple(sorted(v)) for k, v in tests.items()}, truncated
    )


def _python_files(workspace: Path) -> Iterator[Path]:
    for folder, dirs, files in os.walk(workspace):
        dirs[:] = sorted(d for d in dirs if d not in _SKIPPED_DIRS and not d.startswith("."))
        for file in sorted(files):
            if file.endswith(".py"):
                yield Path(folder) / file


def _imports(path: Path, importer: str, *, is_package: bool) -> set[str]:
    """Module names ``path`` imports (``from a import b`` counts as both ``a`` and ``a.b``: b may be a module)."""
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            return set()
        tree = ast.parse(path.read_bytes())
    except (OSError, SyntaxError, ValueError):
        return set()  # an unreadable module imports nothing we can tell
    package = importer.split(".") if is_package else importer.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            if node.level > len(package) + 1:
                continue  # beyond the workspace's top
            prefix = ".".join([*base, *(node.module.split(".") if node.module else [])])
            if prefix:
                found.add(prefix)
            found.update(f"{prefix}.{a.name}" if prefix else a.name for a in node.names if a.name != "*")
    return found
