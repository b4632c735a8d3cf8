"""Every attempt at improving a component, archived per component, and what the next attempt learns from them.

An attempt is one generation for one opportunity: its diff, a fingerprint of the code it produced, its outcome and
why — refused in the generation rounds (with the problems of its last round), not chosen among sibling candidates,
held, rejected, rolled back (with the verdict's reason) or kept (with its measured effect). The next attempt on the
component is shown the best kept versions and why the others failed, in a bounded section of its requirements, and a
change whose code is the same as an earlier attempt that failed is sent back to the model before any test runs
(:func:`repeat_of`): the loop never deploys again an answer it has already refused or rolled back.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from generators.sqlite_db import Database

AttemptOutcome = Literal[
    "refused", "not_chosen", "deployed", "held", "kept", "rolled_back", "rejected", "regressed", "dry_run"
]
# Outcomes whose code must not come back: the model is told so, and a repeat is refused.
FAILED: frozenset[str] = frozenset({"refused", "not_chosen", "rolled_back", "rejected", "regressed"})
SHOWN_KEPT = 2  # the best kept versions shown to the next attempt
SHOWN_FAILED = 5  # the newest failed attempts shown with their reasons
DIFF_CHARS = 600  # of each shown diff
REASON_CHARS = 300
STORED_DIFF_CHARS = 20_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS attempts (
    tenant TEXT NOT NULL,
    component TEXT NOT NULL,
    cycle_id TEXT NOT NULL,
    position INTEGER NOT NULL,
    number INTEGER NOT NULL,
    at REAL NOT NULL,
    outcome TEXT NOT NULL,
    reason TEXT NOT NULL,
    diff TEXT NOT NULL,
    fingerprint TEXT,
    figures TEXT NOT NULL,
    PRIMARY KEY (cycle_id, position, number)
);
CREATE INDEX IF NOT EXISTS attempts_by_component ON attempts (tenant, component, at);
"""


@dataclass(frozen=True, slots=True)
class Attempt:
    """One generation for one opportunity of a cycle (``number`` counts the candidates of that opportunity)."""

    tenant: str
    component: str
    cycle_id: str
    position: int
    number: int
    at: float
    outcome: AttemptOutcome
    reason: str
    diff: str
    fingerprint: str | None
    figures: dict[str, Any]

    @property
    def effect_percent(self) -> float | None:
        """The measured change of the opportunity's figure (negative: lower), when one was measured."""
        value = self.figures.get("effect_percent")
        return float(value) if isinstance(value, int | float) else None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (the diff clipped)."""
        return {
            "cycle_id": self.cycle_id,
            "number": self.number,
            "outcome": self.outcome,
            "reason": self.reason[:REASON_CHARS],
            "effect_percent": self.effect_percent,
            "diff": _clip(self.diff, DIFF_CHARS),
        }


class AttemptArchive(Protocol):
    """Where attempts are archived (SQLite, or PostgreSQL for several replicas). Thread-safe, blocking."""

    def record(self, attempt: Attempt) -> None:
        """Store ``attempt`` (replacing an earlier record of the same cycle, opportunity and number)."""
        ...

    def settle(
        self, cycle_id: str, position: int, outcome: AttemptOutcome, reason: str, figures: dict[str, Any]
    ) -> None:
        """The fate of the deployed attempt of an opportunity (kept, rolled back, rejected...), once known."""
        ...

    def recent(self, tenant: str, component: str, limit: int = 50) -> list[Attempt]:
        """The component's newest attempts, newest first."""
        ...

    def close(self) -> None: ...


class SqliteAttemptArchive:
    """:class:`AttemptArchive` in one SQLite file (WAL); thread-safe, blocking: async callers use a worker thread."""

    def __init__(self, path: Path) -> None:
        self._db = Database(path, _SCHEMA)

    def close(self) -> None:
        self._db.close()

    def record(self, attempt: Attempt) -> None:
        """Store ``attempt`` (replacing an earlier record of the same cycle, opportunity and number)."""
        a = attempt
        with self._db.transaction() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO attempts (tenant, component, cycle_id, position, number, at, outcome, reason,"
                " diff, fingerprint, figures) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (a.tenant, a.component, a.cycle_id, a.position, a.number, a.at, a.outcome, a.reason[:2000],
                 a.diff[:STORED_DIFF_CHARS], a.fingerprint, json.dumps(a.figures, default=str)),
            )  # fmt: skip

    def settle(
        self, cycle_id: str, position: int, outcome: AttemptOutcome, reason: str, figures: dict[str, Any]
    ) -> None:
        """The fate of the deployed attempt of an opportunity (kept, rolled back, rejected...), once known."""
        with self._db.transaction() as conn:
            conn.execute(
                "UPDATE attempts SET outcome = ?, reason = ?, figures = ? WHERE cycle_id = ? AND position = ? AND"
                " outcome IN ('deployed', 'held')",
                (outcome, reason[:2000], json.dumps(figures, default=str), cycle_id, position),
            )

    def recent(self, tenant: str, component: str, limit: int = 50) -> list[Attempt]:
        """The component's newest attempts, newest first."""
        with self._db.lock:
            rows = self._db.conn.execute(
                "SELECT tenant, component, cycle_id, position, number, at, outcome, reason, diff, fingerprint, figures"
                " FROM attempts WHERE tenant = ? AND component = ? ORDER BY at DESC LIMIT ?",
                (tenant, component, limit),
            ).fetchall()
        return [
            Attempt(r[0], r[1], r[2], int(r[3]), int(r[4]), float(r[5]), r[6], r[7], r[8], r[9], json.loads(r[10]))
            for r in rows
        ]


def fingerprint(code: str) -> str:
    """The same for two versions of a module that differ only in whitespace, comments or docstrings."""
    from generators.codegen.change_rules import code_key  # the generation modules load on first use

    return hashlib.sha256(code_key(code).encode()).hexdigest()[:32]


def repeat_of(code: str, earlier: list[Attempt]) -> Attempt | None:
    """The earlier failed attempt whose code ``code`` is, or ``None``."""
    key = fingerprint(code)
    return next((a for a in earlier if a.outcome in FAILED and a.fingerprint == key), None)


def repeat_message(attempt: Attempt) -> str:
    """What the model is told when it sends an answer that already failed."""
    return (
        f"Your change is the same code as an earlier attempt on this component (cycle {attempt.cycle_id[:8]}), "
        f"which was {attempt.outcome.replace('_', ' ')}: {attempt.reason[:REASON_CHARS]}. Do not send it again: "
        "take a different approach to the goal."
    )


def history_section(earlier: list[Attempt]) -> str:
    """The requirements' section on earlier attempts: the best kept versions and why the newest others failed."""
    kept = sorted((a for a in earlier if a.outcome == "kept"), key=lambda a: a.effect_percent or 0.0)[:SHOWN_KEPT]
    failed = [a for a in earlier if a.outcome in FAILED][:SHOWN_FAILED]
    if not kept and not failed:
        return ""
    lines = ["", "Earlier attempts on this component (learn from them; never repeat one that failed):"]
    for a in [*kept, *failed]:
        effect = f", effect {a.effect_percent:+.1f} %" if a.effect_percent is not None else ""
        what = a.outcome.replace("_", " ") + effect
        lines.append(f"- {what}: {a.reason[:REASON_CHARS]}\n{_clip(a.diff, DIFF_CHARS)}")
    return "\n".join(lines) + "\n"


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + f"\n... ({len(text) - limit} characters left out)"
