"""The suite's tasks: one folder each under ``tasks/``, read from its ``task.toml``.

A task folder holds ``workspace/`` (``components/<name>.py`` with a real defect, ``tests/test_<name>.py`` that pass
on it, and ``benchmarks/bench_<name>.py`` where performance is the point), ``task.toml`` (the component, the defect,
and the telemetry that points the learning engine at it), ``reference.md`` (a correct reply in the reply format, the
scripted model's answer) and ``hidden_check.py`` (the acceptance check the model never sees; see
``tasks/checklib.py``).
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

TASKS_DIR = Path(__file__).resolve().parent / "tasks"
HOUR = 3600.0
_SECTION = re.compile(r"^(?P<path>[\w./-]+\.py)\n(?P<fence>`{3,})\w*\n.*?^(?P=fence)$", re.DOTALL | re.MULTILINE)


@dataclass(frozen=True, slots=True)
class Task:
    """One task of the suite."""

    name: str
    folder: Path
    component: str
    defect: str  # the kind of defect, e.g. "quadratic loop"
    summary: str  # what is wrong, in a sentence (never shown to the model)
    telemetry: Literal["latency", "errors"]
    baseline_ms: float = 0.0
    recent_ms: float = 0.0
    errors: tuple[str, ...] = ()

    @property
    def workspace(self) -> Path:
        return self.folder / "workspace"

    @property
    def hidden_check(self) -> Path:
        return self.folder / "hidden_check.py"

    @property
    def module(self) -> str:
        return f"components/{self.component}.py"

    @property
    def tests(self) -> str:
        return f"tests/test_{self.component}.py"

    def reference(self) -> str:
        """The reference answer: a correct reply in the reply format."""
        return (self.folder / "reference.md").read_text(encoding="utf-8")

    def reference_sections(self) -> dict[str, str]:
        """The reference answer's file sections (path line and fenced block), by path."""
        return {m["path"]: m[0] for m in _SECTION.finditer(self.reference())}

    def telemetry_arguments(self, now: float) -> dict[str, Any]:
        """The ``ingest_telemetry`` arguments that point the learning engine at this task's component."""
        if self.telemetry == "errors":
            return {"logs": error_logs(self.component, self.errors, now)}
        return {"metrics": latency_points(self.component, self.baseline_ms, self.recent_ms, now)}


def latency_points(component: str, baseline: float, recent: float, now: float) -> list[dict[str, Any]]:
    """24 h of ``latency_ms`` every 20 minutes with a little jitter; the newest quarter of the window at ``recent``
    (the degradation the learning engine finds)."""
    points = []
    for i in range(72):
        ts = now - 24 * HOUR + 60 + i * 1200
        value = (recent if ts >= now - 6 * HOUR + 60 else baseline) * (1 + (i % 5) / 100)
        points.append(
            {"name": "latency_ms", "value": value, "timestamp": ts, "unit": "Milliseconds",
             "dimensions": {"Component": component}}
        )  # fmt: skip
    return points


def error_logs(component: str, messages: tuple[str, ...], now: float) -> list[dict[str, Any]]:
    """The component's error lines, spread over the last six hours (an error pattern of the component)."""
    step = 6 * HOUR / max(1, len(messages))
    return [
        {"message": message, "level": "ERROR", "component": component, "timestamp": now - 6 * HOUR + 60 + i * step}
        for i, message in enumerate(messages)
    ]


def load_task(name: str) -> Task:
    """The task in ``tasks/<name>``.

    Raises:
        ValueError: there is no such task, or its ``task.toml`` is incomplete.
    """
    folder = TASKS_DIR / name
    spec = folder / "task.toml"
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name) or not spec.is_file():
        raise ValueError(f"no task {name!r}; tasks: {', '.join(task_names())}")
    data = tomllib.loads(spec.read_text(encoding="utf-8"))
    try:
        task = Task(
            name=name,
            folder=folder,
            component=data["component"],
            defect=data["defect"],
            summary=data["summary"],
            telemetry=data["telemetry"],
            baseline_ms=float(data.get("baseline_ms", 0.0)),
            recent_ms=float(data.get("recent_ms", 0.0)),
            errors=tuple(data.get("errors", ())),
        )
    except KeyError as exc:
        raise ValueError(f"{spec} has no {exc.args[0]!r}") from None
    if task.telemetry not in ("latency", "errors") or (task.telemetry == "errors" and len(task.errors) < 3):
        raise ValueError(f"{spec}: telemetry is 'latency', or 'errors' with at least 3 error lines")
    return task


def task_names() -> list[str]:
    """Every task, by name."""
    return sorted(p.parent.name for p in TASKS_DIR.glob("*/task.toml"))


def load_tasks(names: list[str] | None = None) -> list[Task]:
    """The named tasks (all of them by default)."""
    return [load_task(name) for name in (names or task_names())]
