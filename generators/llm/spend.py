"""Spend caps: what the LLM cost, per tenant per UTC day and per improvement cycle, and refusals at the caps.

Callers say whom a request is charged to with :func:`spend_scope` (a context variable, so it follows the tasks a
cycle starts); the client asks :meth:`SpendMeter.check` before each request and :meth:`SpendMeter.record` after it
(a partial answer's tokens too). A request is refused once a cap is reached, so one request can overshoot a cap by
its own size, never by more. Totals live in SQLite in the data directory (WAL), so a restart does not reset a day.
Money is counted only when prices are configured, at the prices of the time of each request.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from generators.errors import SpendCapReached
from generators.sqlite_db import Database

if TYPE_CHECKING:
    from generators.deploy.audit import AuditLog

logger = logging.getLogger(__name__)
UNSCOPED_TENANT = "default"
KEEP_DAYS = 400  # day totals kept; cycle totals are kept as long (a cycle lasts hours)
AUDIT_KIND = "llm_spend_cap_reached"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS spend_by_day (
    tenant TEXT NOT NULL,
    day TEXT NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    cost REAL NOT NULL,
    PRIMARY KEY (tenant, day)
);
CREATE TABLE IF NOT EXISTS spend_by_cycle (
    cycle_id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    cost REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS cap_hits (cap TEXT NOT NULL, period TEXT NOT NULL, ts REAL NOT NULL,
                                     PRIMARY KEY (cap, period));
"""


class SpendCaps(BaseModel):
    """The caps and prices (from the ``llm_max_*`` and ``llm_price_*`` settings)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_tokens_per_cycle: int | None = Field(None, ge=1)
    max_tokens_per_tenant_day: int | None = Field(None, ge=1)
    price_per_million_prompt_tokens: float | None = Field(None, ge=0)
    price_per_million_completion_tokens: float | None = Field(None, ge=0)
    max_cost_per_cycle: float | None = Field(None, ge=0)
    max_cost_per_tenant_day: float | None = Field(None, ge=0)

    @property
    def priced(self) -> bool:
        return self.price_per_million_prompt_tokens is not None or self.price_per_million_completion_tokens is not None

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        prompt = (self.price_per_million_prompt_tokens or 0.0) * prompt_tokens
        return (prompt + (self.price_per_million_completion_tokens or 0.0) * completion_tokens) / 1_000_000


@dataclass(frozen=True, slots=True)
class SpendScope:
    tenant: str
    cycle_id: str | None = None
    actor: str = "server"


_scope: ContextVar[SpendScope | None] = ContextVar("llm_spend_scope", default=None)


@contextmanager
def spend_scope(tenant: str, cycle_id: str | None = None, actor: str = "server") -> Iterator[SpendScope]:
    """Charge the LLM requests made inside (tasks started inside included) to ``tenant`` and ``cycle_id``."""
    scope = SpendScope(tenant, cycle_id, actor)
    token = _scope.set(scope)
    try:
        yield scope
    finally:
        _scope.reset(token)


def current_scope() -> SpendScope:
    return _scope.get() or SpendScope(UNSCOPED_TENANT)


@dataclass(frozen=True, slots=True)
class Spent:
    tokens: int
    cost: float


class Ledger(Protocol):
    """Where spending is counted (SQLite, or PostgreSQL for several replicas sharing their caps). Thread-safe."""

    def today(self) -> str:
        """The current UTC day, as the ledger keys its day totals."""
        ...

    def tenant_day(self, tenant: str, day: str | None = None) -> Spent:
        """What ``tenant`` spent on ``day`` (today)."""
        ...

    def cycle(self, cycle_id: str) -> Spent:
        """What a cycle spent."""
        ...

    def add(self, scope: SpendScope, prompt_tokens: int, completion_tokens: int, cost: float) -> None:
        """Count a call's tokens and cost for its tenant's day and its cycle."""
        ...

    def first_hit(self, cap: str, period: str) -> bool:
        """Remember that ``cap`` was reached in ``period``; True only the first time (one audit entry per hit)."""
        ...

    def close(self) -> None: ...


def utc_day(ts: float) -> str:
    """The UTC day of ``ts`` as ledgers key day totals."""
    return datetime.fromtimestamp(ts, UTC).date().isoformat()


class SpendLedger:
    """:class:`Ledger` in one SQLite file: token and money totals per tenant per UTC day and per cycle. Thread-safe."""

    def __init__(self, path: Path, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self._clock = clock
        self._db = Database(path, _SCHEMA)
        oldest = self._day(clock() - KEEP_DAYS * 86400)
        with self._db.transaction() as conn:
            conn.execute("DELETE FROM spend_by_day WHERE day < ?", (oldest,))
            conn.execute("DELETE FROM spend_by_cycle WHERE updated < ?", (clock() - KEEP_DAYS * 86400,))
            conn.execute("DELETE FROM cap_hits WHERE ts < ?", (clock() - KEEP_DAYS * 86400,))

    def close(self) -> None:
        self._db.close()

    def today(self) -> str:
        return self._day(self._clock())

    def tenant_day(self, tenant: str, day: str | None = None) -> Spent:
        sql = "SELECT prompt_tokens + completion_tokens, cost FROM spend_by_day WHERE tenant = ? AND day = ?"
        return self._one(sql, (tenant, day or self.today()))

    def cycle(self, cycle_id: str) -> Spent:
        return self._one("SELECT prompt_tokens + completion_tokens, cost FROM spend_by_cycle WHERE cycle_id = ?",
                         (cycle_id,))  # fmt: skip

    def add(self, scope: SpendScope, prompt_tokens: int, completion_tokens: int, cost: float) -> None:
        now = self._clock()
        with self._db.transaction() as conn:
            conn.execute(
                "INSERT INTO spend_by_day VALUES (?, ?, ?, ?, ?) ON CONFLICT (tenant, day) DO UPDATE SET "
                "prompt_tokens = prompt_tokens + excluded.prompt_tokens, "
                "completion_tokens = completion_tokens + excluded.completion_tokens, cost = cost + excluded.cost",
                (scope.tenant, self._day(now), prompt_tokens, completion_tokens, cost),
            )
            if scope.cycle_id is not None:
                conn.execute(
                    "INSERT INTO spend_by_cycle VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (cycle_id) DO UPDATE SET "
                    "prompt_tokens = prompt_tokens + excluded.prompt_tokens, "
                    "completion_tokens = completion_tokens + excluded.completion_tokens, "
                    "cost = cost + excluded.cost, updated = excluded.updated",
                    (scope.cycle_id, scope.tenant, prompt_tokens, completion_tokens, cost, now),
                )

    def first_hit(self, cap: str, period: str) -> bool:
        """Remember that ``cap`` was reached in ``period``; True only the first time (one audit entry per hit)."""
        with self._db.transaction() as conn:
            cursor = conn.execute("INSERT OR IGNORE INTO cap_hits VALUES (?, ?, ?)", (cap, period, self._clock()))
        return cursor.rowcount == 1

    def _one(self, sql: str, params: tuple[str, ...]) -> Spent:
        with self._db.lock:
            row = self._db.conn.execute(sql, params).fetchone()
        return Spent(int(row[0]), float(row[1])) if row else Spent(0, 0.0)

    @staticmethod
    def _day(ts: float) -> str:
        return utc_day(ts)


@dataclass(frozen=True, slots=True)
class _Cap:
    setting: str
    unit: Literal["tokens", "money"]
    per: Literal["cycle", "tenant_day"]


_CAPS = (
    _Cap("llm_max_tokens_per_cycle", "tokens", "cycle"),
    _Cap("llm_max_cost_per_cycle", "money", "cycle"),
    _Cap("llm_max_tokens_per_tenant_day", "tokens", "tenant_day"),
    _Cap("llm_max_cost_per_tenant_day", "money", "tenant_day"),
)


class SpendMeter:
    """Applies :class:`SpendCaps` with a :class:`Ledger`; writes one audit entry per cap hit. Blocking: run the
    methods in a worker thread."""

    def __init__(self, caps: SpendCaps, ledger: Ledger, audit: AuditLog | None = None) -> None:
        self.caps = caps
        self.ledger = ledger
        self.audit = audit
        if not caps.priced and (caps.max_cost_per_cycle is not None or caps.max_cost_per_tenant_day is not None):
            logger.warning("LLM money caps are set but no price per token is: only the token caps apply")

    def check(self, scope: SpendScope) -> None:
        """Raises SpendCapReached when a cap of ``scope`` is already reached (and audits the first refusal)."""
        for cap in _CAPS:
            limit = self._limit(cap)
            if limit is None or (cap.per == "cycle" and scope.cycle_id is None):
                continue
            spent = (
                self.ledger.cycle(str(scope.cycle_id)) if cap.per == "cycle" else self.ledger.tenant_day(scope.tenant)
            )
            amount = spent.tokens if cap.unit == "tokens" else spent.cost
            if amount >= limit:
                self._refuse(cap, scope, amount, limit)

    def record(self, scope: SpendScope, prompt_tokens: int, completion_tokens: int) -> None:
        if prompt_tokens or completion_tokens:
            self.ledger.add(scope, prompt_tokens, completion_tokens, self.caps.cost(prompt_tokens, completion_tokens))

    def _limit(self, cap: _Cap) -> float | None:
        if cap.unit == "money" and not self.caps.priced:
            return None
        name = cap.setting.removeprefix("llm_")
        value: float | None = getattr(self.caps, name)
        return value

    def _refuse(self, cap: _Cap, scope: SpendScope, amount: float, limit: float) -> None:
        day = self.ledger.today()
        period = f"cycle {scope.cycle_id}" if cap.per == "cycle" else f"tenant {scope.tenant!r} on {day} (UTC)"
        shown = _tokens if cap.unit == "tokens" else _money
        env = f"SELF_BUILDING_{cap.setting.upper()}"
        after = "for larger cycles" if cap.per == "cycle" else "or wait for the next UTC day"
        message = (
            f"the LLM spend cap {cap.setting} is reached: {period} has spent {shown(amount)} of {shown(limit)}; "
            f"no more LLM requests are sent for it (raise {cap.setting} / {env} {after})"
        )
        if self.ledger.first_hit(cap.setting, period):
            logger.warning("%s", message)
            if self.audit is not None:
                detail = {"cap": cap.setting, "limit": limit, "spent": amount, "unit": cap.unit,
                          "cycle_id": scope.cycle_id, "day": day}  # fmt: skip
                self.audit.append(AUDIT_KIND, cap.setting, actor=scope.actor, tenant=scope.tenant, detail=detail)
        raise SpendCapReached(message)


def _tokens(value: float) -> str:
    return f"{value:,.0f} tokens"


def _money(value: float) -> str:
    return f"{value:,.4f}"
