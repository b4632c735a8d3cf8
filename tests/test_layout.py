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
