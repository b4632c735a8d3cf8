"""The four packages resolve side by side, imports flow server → tools → {generators, telemetry}, and the
heavy or foreign libraries stay in the package that owns them."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

from server.guard import PACKAGES, StartupError, check_packages, package_dirs

ROOT = Path(__file__).resolve().parent.parent
# Which first-party packages each package may import.
ALLOWED = {
    "server": {"server", "tools", "generators", "telemetry"},
    "tools": {"tools", "generators", "telemetry"},
    "generators": {"generators"},
    "telemetry": {"telemetry"},
}
# Third-party libraries and the only packages allowed to import them.
OWNERS = {
    "mcp": {"server", "tools"},
    "starlette": {"server"},
    "uvicorn": {"server"},
    "psutil": {"telemetry"},
    "pynvml": {"telemetry"},
    "boto3": {"telemetry"},
    "botocore": {"telemetry"},
    "openai": {"generators"},
}


def imported_roots(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    roots: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", None) == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            roots.add(node.args[0].value.split(".")[0])
    return roots


def modules() -> list[tuple[str, Path]]:
    return [(pkg, path) for pkg in PACKAGES for path in sorted((ROOT / pkg).rglob("*.py"))]


def test_packages_resolve_side_by_side() -> None:
    dirs = package_dirs()
    assert dirs == {name: ROOT / name for name in PACKAGES}
    assert check_packages() == ROOT


@pytest.mark.parametrize(("package", "path"), modules(), ids=lambda v: str(v))
def test_imports_flow_one_way(package: str, path: Path) -> None:
    roots = imported_roots(path)
    first_party = roots & set(PACKAGES)
    assert first_party <= ALLOWED[package], f"{path.relative_to(ROOT)} imports {sorted(first_party - ALLOWED[package])}"
    for library, owners in OWNERS.items():
        if library in roots:
            assert package in owners, f"{path.relative_to(ROOT)} imports {library}; only {sorted(owners)} may"


# Inside telemetry and generators, which of a package's parts each part may import (a part is a sub-package or a
# module at the package's root). Together with the next test: the parts form layers, with no circle between them.
PARTS = {
    "telemetry": {
        "clock": set(),
        "errors": set(),
        "store": {"clock", "errors"},
        "host": {"errors", "store"},
        "monitoring": {"clock", "errors", "host", "store"},
        "learning": {"errors", "host", "store"},
        "ingest": {"errors", "learning", "store"},
        "cloudwatch": {"errors", "host", "ingest", "learning", "store"},
        "selfcheck": {"clock", "errors", "learning", "store"},
    },
    "generators": {
        "clock": set(),
        "errors": set(),
        "loop": set(),
        "sqlite_db": {"errors"},
        "pg_db": set(),
        "validation": {"errors"},
        "measure": {"errors", "validation"},
        "jobs": {"errors", "measure", "pg_db", "validation"},
        "remediation": {"errors"},
        "deploy": {"errors", "pg_db", "sqlite_db"},
        "llm": {"deploy", "errors", "pg_db", "sqlite_db"},
        "codegen": {"errors", "jobs", "llm", "validation"},
        "improvement": {
            "clock",
            "codegen",
            "deploy",
            "errors",
            "jobs",
            "llm",
            "loop",
            "measure",
            "pg_db",
            "sqlite_db",
            "validation",
        },
        "changes": {"codegen", "deploy", "errors", "llm"},
        "toolhost": {"clock", "codegen", "deploy", "errors", "pg_db", "sqlite_db", "validation"},
    },
}


def imported_modules(path: Path) -> set[str]:
    """First-party modules ``path`` imports by absolute name (``from a.b import c`` counts ``a.b.c`` when that is a
    module, else ``a.b``), type-checking imports included."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [f"{node.module}.{alias.name}" for alias in node.names]
            names = [n if _module_path(n) else node.module for n in names]
        found.update(n for n in names if n.split(".")[0] in PACKAGES)
    return {n for n in found if _module_path(n)}


def _module_path(name: str) -> Path | None:
    base = ROOT.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def part_violations(package: str, parts: dict[str, set[str]]) -> list[str]:
    """The imports inside ``package`` from one part into a part it may not import."""
    wrong = []
    for path in sorted((ROOT / package).rglob("*.py")):
        part = path.relative_to(ROOT / package).parts[0].removesuffix(".py")
        for module in imported_modules(path):
            other = module.split(".")[1] if module.count(".") and module.startswith(package + ".") else None
            if other is not None and other != part and other not in parts.get(part, set()):
                wrong.append(f"{path.relative_to(ROOT)} imports {module}")
    return wrong


@pytest.mark.parametrize("package", sorted(PARTS))
def test_the_parts_of_a_package_form_layers(package: str) -> None:
    parts = PARTS[package]
    found = {
        p.name.removesuffix(".py")
        for p in (ROOT / package).iterdir()
        if (p.suffix == ".py" and p.name != "__init__.py") or (p / "__init__.py").is_file()
    }
    assert found == set(parts), f"{package}'s parts changed: add them to PARTS with what they may import"
    assert not part_violations(package, parts)


def test_the_layer_check_reports_an_import_against_the_layers() -> None:
    """The check itself works: were the store allowed nothing, its imports of telemetry.errors would be reported."""
    strict = {**PARTS["telemetry"], "store": set()}
    violations = part_violations("telemetry", strict)
    assert any(v.startswith("telemetry/store/") and "telemetry.errors" in v for v in violations)


def circles_in(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every circle of imports a depth-first walk of ``graph`` meets (a package importing its own modules is not
    one)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    circles: list[list[str]] = []

    def visit(module: str, trail: list[str]) -> None:
        state[module] = 1
        for other in sorted(graph.get(module, ())):
            if other == module or other.startswith(module + "."):
                continue
            if state.get(other) == 1:
                circles.append([*trail[trail.index(other) :], other])
            elif other not in state:
                visit(other, [*trail, other])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    return circles


def test_no_module_imports_itself_in_a_circle() -> None:
    graph = {_module_name(path): imported_modules(path) for _, path in modules()}
    assert not circles_in(graph)


def test_the_circle_finder_finds_one() -> None:
    graph = {"a": {"a.x", "b"}, "a.x": set(), "b": {"c"}, "c": {"a"}, "d": {"c"}}
    assert circles_in(graph) == [["a", "b", "c", "a"]]


def test_rules_catch_a_violation(tmp_path: Path) -> None:
    """The scanner itself works: a telemetry module importing tools would be reported."""
    bad = tmp_path / "bad.py"
    bad.write_text("import tools.status\nfrom mcp import Client\nimportlib.import_module('openai')\n", encoding="utf-8")
    assert imported_roots(bad) == {"tools", "mcp", "openai"}


def test_guard_refuses_a_shadowing_package(tmp_path: Path) -> None:
    """A foreign `tools` package earlier on sys.path stops the server with a clear message and exit code 2."""
    (tmp_path / "tools").mkdir()
    (tmp_path / "tools" / "__init__.py").write_text("", encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "SELF_BUILDING_DATA_DIR": str(tmp_path / "data")}
    proc = subprocess.run(
        [sys.executable, "-c", "import sys; from server.cli import main; sys.exit(main(['status']))"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    assert "another installation shadows this project's packages: tools from" in proc.stderr
    assert proc.stdout == ""


def test_guard_unit(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import server.guard as guard

    monkeypatch.setattr(guard, "package_dirs", lambda: {"server": ROOT / "server", "tools": None})
    with pytest.raises(StartupError, match="tools cannot be imported"):
        guard.check_packages()


# Where a test may sleep: the one polling helper, the fake clock's real-time sibling (OffsetClock), and a child
# process that pauses at a failpoint until it is killed. Elsewhere a sleep must be the behaviour under test (a slow
# client's pace), marked "# pace:" on its line.
SLEEPS_ALLOWED = {"polling.py", "fake_clock.py", "deploy_crash_child.py"}


def test_tests_wait_on_events_or_the_polling_helper_never_on_a_sleep() -> None:
    found = []
    for path in sorted((ROOT / "tests").glob("*.py")):
        if path.name in SLEEPS_ALLOWED:
            continue
        text = path.read_text(encoding="utf-8")
        lines = text.splitlines()
        for node in ast.walk(ast.parse(text, filename=str(path))):
            if not isinstance(node, ast.Call):
                continue
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if name == "sleep" and "# pace:" not in lines[node.lineno - 1]:
                found.append(f"{path.name}:{node.lineno}: {lines[node.lineno - 1].strip()}")
    assert found == [], "wait on an event, a notification, a FakeClock or tests.polling.eventually:\n" + "\n".join(
        found
    )
