"""Start-up guard: the four top-level packages must be this project's, side by side.

``server``, ``tools``, ``generators`` and ``telemetry`` are common names; another distribution (or a stray folder
on ``sys.path``) could shadow one of them and the server would run someone else's code. Fail fast instead.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

PACKAGES = ("server", "tools", "generators", "telemetry")


class StartupError(RuntimeError):
    """The installation is broken in a way the user must fix before the server can start."""


def package_dirs() -> dict[str, Path | None]:
    """Where each of the four packages resolves (None when it does not)."""
    found: dict[str, Path | None] = {}
    for name in PACKAGES:
        spec = importlib.util.find_spec(name)
        origin = spec.origin if spec is not None else None
        found[name] = Path(origin).resolve().parent if origin else None
    return found


def check_packages() -> Path:
    """Return the directory holding the four packages, or raise :class:`StartupError` saying what is wrong."""
    dirs = package_dirs()
    missing = [name for name, path in dirs.items() if path is None]
    if missing:
        raise StartupError(
            f"package(s) {', '.join(missing)} cannot be imported; reinstall self-building-mcp (pip install -e .)"
        )
    roots = {name: path.parent for name, path in dirs.items() if path is not None}
    expected = roots["server"]
    strays = {name: root for name, root in roots.items() if root != expected}
    if strays:
        detail = ", ".join(f"{name} from {root / name}" for name, root in strays.items())
        raise StartupError(
            f"another installation shadows this project's packages: {detail} (expected all under {expected}). "
            "Remove the conflicting package or run the server from its own virtual environment."
        )
    return expected
