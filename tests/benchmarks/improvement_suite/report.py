"""The suite's table (per task: outcome, hidden check, rounds, tokens, seconds; then totals and the solve rate) and
its JSON."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tests.benchmarks.improvement_suite.runner import TaskResult

COLUMNS = ("task", "defect", "outcome", "hidden", "rounds", "tokens", "seconds")


def totals(results: Sequence[TaskResult]) -> dict[str, Any]:
    """Counts over every task: kept, hidden check passes, solved (kept and passing), and the solve rate."""
    solved = sum(r.solved for r in results)
    return {
        "tasks": len(results),
        "kept": sum(r.outcome == "kept" for r in results),
        "hidden_passed": sum(r.hidden_passed for r in results),
        "solved": solved,
        "solve_rate_percent": round(100.0 * solved / len(results), 1) if results else 0.0,
        "rounds": sum(r.rounds for r in results),
        "tokens": sum(r.tokens for r in results),
        "seconds": round(sum(r.seconds for r in results), 1),
    }


def table(results: Sequence[TaskResult]) -> str:
    """The per-task table and a totals line, as text."""
    rows = [
        (r.task, r.defect, r.outcome, "pass" if r.hidden_passed else "FAIL", str(r.rounds), str(r.tokens),
         f"{r.seconds:.1f}")
        for r in results
    ]  # fmt: skip
    widths = [max(len(COLUMNS[i]), *(len(row[i]) for row in rows)) for i in range(len(COLUMNS))]
    numeric = {"rounds", "tokens", "seconds"}

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            cell.rjust(w) if name in numeric else cell.ljust(w)
            for name, cell, w in zip(COLUMNS, cells, widths, strict=True)
        ).rstrip()

    t = totals(results)
    lines = [line(COLUMNS), line(["-" * w for w in widths]), *(line(row) for row in rows)]
    lines.append(
        f"\n{t['tasks']} tasks: {t['kept']} kept, {t['hidden_passed']} pass the hidden check, {t['solved']} solved "
        f"(kept and passing): solve rate {t['solve_rate_percent']:.1f}%; {t['rounds']} rounds, {t['tokens']} tokens, "
        f"{t['seconds']:.1f} s"
    )
    return "\n".join(lines) + "\n"


def write_json(path: Path, results: Sequence[TaskResult], run: dict[str, Any]) -> None:
    """``{"run": ..., "totals": ..., "tasks": [...]}`` to ``path``."""
    data = {"run": run, "totals": totals(results), "tasks": [r.to_dict() for r in results]}
    path.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
