"""Error patterns on live logs: each tenant's lines go through the log-pattern miner as they are stored.

A raw line's header is split off by its source's :class:`LogSource` before mining: the source is the record's
``log_source`` attribute (an agent's name for where its lines come from) or its CloudWatch ``log_group``, within the
record's origin (``agent``, ``cloudwatch``). Its format is the record's own ``log_format`` attribute, else the one
configured for the source's name, else the layout learned from the source's first lines.

Per pattern the watch keeps hourly buckets (lines, error lines, first and last timestamp), so a query for any
window is a sum over hours: counts are exact to the hour, and the window's first hour counts whole. After a restart
(or when a tenant was evicted) a tenant's miner is rebuilt from its stored logs on first use.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from pydantic import BaseModel, Field

from telemetry.learning.insights import Insight, Severity, insight_id
from telemetry.learning.logpatterns import LogFormat, LogPatternMiner, LogSource, MinerConfig
from telemetry.learning.logpatterns.formats import compiled_format
from telemetry.store.records import LogRecord, TelemetryStore

logger = logging.getLogger(__name__)
HOUR = 3600
MIN_ERRORS_FOR_INSIGHT = 3
ERRORS_METRIC = "log.errors"
MAX_SOURCES = 64  # log sources with a learned layout per tenant; the least recently used one is relearned
SourceKey = tuple[str, str, str]  # origin, source name, explicit format ("" when none)


class ErrorPattern(BaseModel):
    pattern_id: int = Field(description="Stable id (a merge keeps the oldest).")
    template: str = Field(description="Template, <*> for variable parts.")
    count: int = Field(description="Lines in the window.")
    error_count: int = Field(description="Of those, error lines.")
    error_share_percent: float = Field(description="error_count / count, %.")
    first_seen: float = Field(description="Unix time of its first line in the window.")
    last_seen: float = Field(description="Unix time of its latest line.")
    example: str = Field(description="Its first message.")
    components: list[str] = Field(description="Components that logged it.")
    levels: dict[str, int] = Field(description="Lines per level, all time.")


class PatternReport(BaseModel):
    patterns: list[ErrorPattern] = Field(description="Patterns, those with most errors first, then most lines.")
    total_patterns: int = Field(description="Patterns with lines in the window.")
    lines: int = Field(description="Log lines in the window.")
    error_lines: int = Field(description="Error lines in the window.")


@dataclass(slots=True)
class _Hour:
    count: int = 0
    errors: int = 0
    first: float = float("inf")
    last: float = float("-inf")


@dataclass(slots=True)
class _Tenant:
    miner: LogPatternMiner
    hours: dict[int, dict[int, _Hour]] = field(default_factory=lambda: defaultdict(dict))
    sources: OrderedDict[SourceKey, LogSource] = field(default_factory=OrderedDict)


class PatternWatch:
    """Thread-safe: one lock covers storing a batch and feeding it, so a rebuild never counts a line twice."""

    def __init__(
        self,
        store: TelemetryStore,
        *,
        config: MinerConfig | None = None,
        max_tenants: int = 1_000,
        replay_limit: int = 100_000,
        retention_seconds: float = 30 * 86400,
        clock: Callable[[], float],
        log_formats: Mapping[str, str] | None = None,
    ) -> None:
        """``log_formats``: explicit formats by source name (raises ValueError for one that cannot be used)."""
        self._store = store
        self._config = config or MinerConfig()
        self._max_tenants = max_tenants
        self._replay_limit = replay_limit
        self._retention = retention_seconds
        self._clock = clock
        self._formats = {name: compiled_format(spec) for name, spec in (log_formats or {}).items()}
        self._tenants: OrderedDict[str, _Tenant] = OrderedDict()
        self._lock = threading.Lock()

    def ingest(self, logs: Sequence[LogRecord], write: Callable[[], int]) -> int:
        """Store ``logs`` with ``write`` and feed them to their tenants' miners; returns what ``write`` returned."""
        with self._lock:
            written = write()
            by_tenant: dict[str, list[LogRecord]] = defaultdict(list)
            for record in logs:
                by_tenant[record.tenant].append(record)
            for tenant, records in by_tenant.items():
                state = self._tenants.get(tenant)
                if state is None:
                    self._load(tenant)  # rebuilt from the store, which now holds this batch too
                    continue
                self._tenants.move_to_end(tenant)
                self._feed_all(state, records)
            return written

    def report(self, tenant: str, start: float, end: float, limit: int) -> PatternReport:
        """The tenant's patterns with lines in [start, end], most errors first."""
        with self._lock:
            state = self._state(tenant)
            rows = self._window(state, start, end)
        rows.sort(key=lambda p: (-p.error_count, -p.count, p.pattern_id))
        return PatternReport(
            patterns=rows[:limit],
            total_patterns=len(rows),
            lines=sum(p.count for p in rows),
            error_lines=sum(p.error_count for p in rows),
        )

    def insights(self, tenant: str, start: float, end: float, metric_name: str | None) -> tuple[list[Insight], int]:
        """Error patterns as insights (a ``WindowAnalyser`` for the learning engine)."""
        if metric_name is not None:
            return [], 0
        report = self.report(tenant, start, end, limit=10_000)
        hours = max(1.0, (end - start) / HOUR)
        out: list[Insight] = []
        for p in report.patterns:
            if p.error_count < MIN_ERRORS_FOR_INSIGHT:
                continue
            share_of_errors = 100.0 * p.error_count / max(1, report.error_lines)
            span_hours = max(1.0, (p.last_seen - p.first_seen) / HOUR)
            out.append(
                Insight(
                    id=insight_id("error_pattern", tenant, str(p.pattern_id)),
                    kind="error_pattern",
                    severity=_severity(p.error_count, share_of_errors),
                    tenant=tenant,
                    metric=ERRORS_METRIC,
                    component=p.components[0] if p.components else None,
                    summary=f"{p.error_count} error lines like '{p.template[:120]}'",
                    evidence={
                        "pattern_id": p.pattern_id,
                        "template": p.template[:500],
                        "count": p.count,
                        "error_count": p.error_count,
                        "error_share_percent": p.error_share_percent,
                        "change_percent": round(share_of_errors, 2),
                        "bad_share_percent": round(min(100.0, 100.0 * span_hours / hours), 2),
                        "first_at": p.first_seen,
                        "last_at": p.last_seen,
                        "direction": "up_is_bad",
                    },
                    detected_at=p.last_seen,
                )
            )
        return out, report.lines

    def _state(self, tenant: str) -> _Tenant:
        state = self._tenants.get(tenant)
        if state is None:
            return self._load(tenant)
        self._tenants.move_to_end(tenant)
        return state

    def _load(self, tenant: str) -> _Tenant:
        state = _Tenant(LogPatternMiner(self._config))
        since = self._clock() - self._retention
        replay = self._store.logs(tenant, start=since, limit=self._replay_limit, newest=True)
        self._feed_all(state, replay)
        if len(replay) == self._replay_limit:
            logger.warning(
                "tenant %s: error patterns rebuilt from its newest %d stored log lines only", tenant, len(replay)
            )
        self._tenants[tenant] = state
        if len(self._tenants) > self._max_tenants:
            self._tenants.popitem(last=False)
        return state

    def _feed_all(self, state: _Tenant, records: Sequence[LogRecord]) -> None:
        """Feed ``records`` in order, each source having learned from its lines among them first."""
        keys = [_source_key(record) for record in records]
        by_source: dict[SourceKey, list[LogRecord]] = defaultdict(list)
        for key, record in zip(keys, records, strict=True):
            by_source[key].append(record)
        sources = {key: self._source(state, key, lines) for key, lines in by_source.items()}
        for key, record in zip(keys, records, strict=True):
            _feed(state, sources[key], record)

    def _source(self, state: _Tenant, key: SourceKey, records: Iterable[LogRecord]) -> LogSource:
        source = state.sources.get(key)
        if source is None:
            _, name, spec = key
            log_format = _pushed_format(spec) if spec else self._formats.get(name)
            source = state.sources[key] = LogSource(log_format)
            if len(state.sources) > MAX_SOURCES:
                state.sources.popitem(last=False)
        else:
            state.sources.move_to_end(key)
        if source.learning:
            source.learn(r.message for r in records)
        return source

    def _window(self, state: _Tenant, start: float, end: float) -> list[ErrorPattern]:
        miner = state.miner
        first_hour, last_hour = int(start // HOUR), int(end // HOUR)
        expired = int((self._clock() - self._retention) // HOUR)
        merged: dict[int, _Hour] = {}
        for pid in list(state.hours):
            hours = state.hours[pid]
            for hour in [h for h in hours if h < expired]:
                del hours[hour]
            root = miner.resolve(pid)
            if miner.template(root) is None:  # evicted by the miner's bound
                del state.hours[pid]
                continue
            total = merged.setdefault(root, _Hour())
            for hour, bucket in hours.items():
                if first_hour <= hour <= last_hour:
                    total.count += bucket.count
                    total.errors += bucket.errors
                    total.first = min(total.first, bucket.first)
                    total.last = max(total.last, bucket.last)
        stats = {s.pattern_id: s for s in miner.patterns()}
        rows: list[ErrorPattern] = []
        for pid, total in merged.items():
            s = stats.get(pid)
            if s is None or total.count == 0:
                continue
            rows.append(
                ErrorPattern(
                    pattern_id=pid,
                    template=s.template,
                    count=total.count,
                    error_count=total.errors,
                    error_share_percent=round(100.0 * total.errors / total.count, 2),
                    first_seen=total.first,
                    last_seen=total.last,
                    example=s.example,
                    components=s.components,
                    levels=s.levels,
                )
            )
        return rows


def _source_key(record: LogRecord) -> SourceKey:
    attributes = record.attributes
    name = attributes.get("log_source") or attributes.get("log_group") or ""
    spec = attributes.get("log_format") or ""
    return record.source, name if isinstance(name, str) else "", spec if isinstance(spec, str) else ""


def _pushed_format(spec: str) -> LogFormat | None:
    try:
        return compiled_format(spec)
    except ValueError:  # refused at ingest; a record stored before that check is split by the learned layout
        return None


def _feed(state: _Tenant, source: LogSource, record: LogRecord) -> None:
    # A raw line with its header, or a structured (JSON) line: mine its message and keep the fields it names (a
    # plain line comes back as it is).
    parsed = source.parse(record.message)
    level, component = parsed.level or record.level, record.component or parsed.component
    match = state.miner.add(parsed.message, timestamp=record.timestamp, level=level, component=component)
    bucket = state.hours[match.pattern_id].setdefault(int(record.timestamp // HOUR), _Hour())
    bucket.count += 1
    if match.is_error:  # judged once, by the miner
        bucket.errors += 1
    if record.timestamp < bucket.first:
        bucket.first = record.timestamp
    if record.timestamp > bucket.last:
        bucket.last = record.timestamp


def _severity(errors: int, share_of_errors: float) -> Severity:
    if errors >= 1000 or share_of_errors >= 50:
        return "high" if errors >= 10 else "medium"
    return "medium" if errors >= 100 or share_of_errors >= 20 else "low"
