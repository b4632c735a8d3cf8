"""Validation of pushed telemetry: every item is checked on its own, good ones are kept, bad ones get a reason."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any, Literal, NotRequired, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    field_validator,
    with_config,
)
from typing_extensions import TypedDict

from telemetry.errors import TelemetryError
from telemetry.learning.logpatterns.formats import compiled_format
from telemetry.store.records import EventRecord, LogRecord, MetricPoint

MAX_ITEMS = 10_000
MAX_REJECTIONS_LISTED = 100
FUTURE_SLACK_SECONDS = 3600.0
TENANT_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_NAME = r"^[A-Za-z0-9_][A-Za-z0-9_.:/-]{0,254}$"
LEVELS = ("TRACE", "DEBUG", "INFO", "NOTICE", "WARNING", "ERROR", "CRITICAL", "FATAL")


def parse_timestamp(value: float | str | None, now: float) -> float:
    """Unix seconds (or milliseconds, recognised by size) or ISO 8601; None means now."""
    if value is None:
        return now
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            raise ValueError(f"timestamp {value!r} is neither Unix seconds nor ISO 8601") from None
    if not math.isfinite(value):
        raise ValueError("timestamp must be a finite number")
    return value / 1000.0 if value > 1e11 else float(value)


class _Item(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    timestamp: float | str | None = None


DimensionName = Annotated[str, StringConstraints(min_length=1, max_length=128)]
DimensionValue = Annotated[str, StringConstraints(max_length=256)]


MAX_MAGNITUDE, MIN_MAGNITUDE = 1e108, 1e-108  # CloudWatch's range of a metric value (and 0)


def _flushed(value: float) -> float:
    """A value closer to 0 than :data:`MIN_MAGNITUDE` is stored as 0: below what CloudWatch resolves, and its squares
    would underflow (PostgreSQL refuses such arithmetic, failing every analysis of the series)."""
    return value if value == 0.0 or abs(value) >= MIN_MAGNITUDE else 0.0


@with_config(ConfigDict(extra="forbid", str_strip_whitespace=True))
class MetricIn(TypedDict):
    """A metric point as pushed. A TypedDict, not a model: metrics come by the hundred thousand, and validating
    into plain dicts costs a third less than building model instances."""

    name: Annotated[str, Field(pattern=_NAME)]
    # CloudWatch's range: sums cannot overflow, nor (with tiny magnitudes stored as 0) underflow
    value: Annotated[float, Field(allow_inf_nan=False, ge=-MAX_MAGNITUDE, le=MAX_MAGNITUDE), AfterValidator(_flushed)]
    timestamp: NotRequired[float | str | None]
    unit: NotRequired[Annotated[str | None, Field(max_length=32)]]
    dimensions: NotRequired[Annotated[dict[DimensionName, DimensionValue], Field(max_length=30)]]


class LogIn(_Item):
    message: str = Field(min_length=1, max_length=32_768)
    level: str = "INFO"
    component: str | None = Field(None, max_length=256)
    attributes: dict[str, Any] = Field(default_factory=dict)

    @field_validator("level")
    @classmethod
    def _level(cls, level: str) -> str:
        upper = level.upper()
        upper = {"WARN": "WARNING", "ERR": "ERROR"}.get(upper, upper)
        if upper not in LEVELS:
            raise ValueError(f"level must be one of {', '.join(LEVELS)}")
        return upper

    @field_validator("attributes")
    @classmethod
    def _log_format(cls, attributes: dict[str, Any]) -> dict[str, Any]:
        spec = attributes.get("log_format")
        if spec is not None:  # the layout of this source's raw lines: refused here rather than ignored later
            if not isinstance(spec, str):
                raise ValueError("log_format must be a string such as '<Date> <Time> <Level> <Component>: <Content>'")
            compiled_format(spec)
        return attributes


class EventIn(_Item):
    type: str = Field(pattern=_NAME)
    detail: dict[str, Any] = Field(default_factory=dict)
    id: str | None = Field(None, min_length=1, max_length=256)


Kind = Literal["metric", "log", "event"]
ItemT = TypeVar("ItemT")


class Rejection(BaseModel):
    kind: Kind = Field(description="Which list the item was in.")
    index: int = Field(description="Its position there (0-based).")
    reason: str = Field(description="What was wrong.")


class Accepted(BaseModel):
    metrics: int = Field(description="Metric points stored.")
    logs: int = Field(description="Log records stored.")
    events: int = Field(description="Events stored (an id is stored once).")
    duplicate_events: int = Field(0, description="Events with an id already stored.")


class Batch(BaseModel):
    """The valid items of one push, ready for the store, and why the others were refused."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    metrics: list[MetricPoint]
    logs: list[LogRecord]
    events: list[EventRecord]
    rejections: list[Rejection]


_METRICS = TypeAdapter(list[MetricIn])
_LOGS = TypeAdapter(list[LogIn])
_EVENTS = TypeAdapter(list[EventIn])
_KIND_ORDER = {"metric": 0, "log": 1, "event": 2}


def _validated(
    adapter: TypeAdapter[list[ItemT]], items: Sequence[Any], kind: Kind, rejections: list[Rejection]
) -> list[tuple[int, ItemT]]:
    """Validate a whole list in one pass; on errors, reject the failing items and validate the rest again."""
    try:
        return list(enumerate(adapter.validate_python(items)))
    except ValidationError as exc:
        by_index: dict[int, list[str]] = {}
        for error in exc.errors():
            index, *field = error["loc"]
            where = ".".join(str(p) for p in field) or "item"
            message = str(error["msg"]).replace("Value error, ", "")
            if not field and error["type"] in ("model_type", "model_attributes_type", "dict_type"):
                message = f"must be an object, got {type(items[int(index)]).__name__}"
            by_index.setdefault(int(index), []).append(message if where == "item" else f"{where}: {message}")
    rejections.extend(Rejection(kind=kind, index=i, reason="; ".join(m)) for i, m in by_index.items())
    keep = [i for i in range(len(items)) if i not in by_index]
    return list(zip(keep, adapter.validate_python([items[i] for i in keep]), strict=True))


def _when(value: float | str | None, now: float, oldest: float = float("-inf")) -> float:
    ts = parse_timestamp(value, now)
    if ts > now + FUTURE_SLACK_SECONDS:
        raise ValueError("timestamp is more than an hour in the future")
    if ts < oldest:
        days = (now - oldest) / 86400
        raise ValueError(f"timestamp is older than the retention period ({days:g} days): it would be pruned at once")
    return ts


def check_tenant(tenant: str) -> str:
    if not TENANT_PATTERN.match(tenant):
        raise TelemetryError(
            f"tenant_id {tenant!r} is not valid: use 1-64 letters, digits, '.', '_' or '-', starting with a letter "
            "or digit"
        )
    return tenant


def validate_batch(
    tenant: str,
    metrics: Sequence[Any],
    logs: Sequence[Any],
    events: Sequence[Any],
    *,
    now: float,
    source: str = "agent",
    retention_seconds: float | None = None,
) -> Batch:
    """Check every item; raises only for a bad tenant or an oversized push, never for one bad item."""
    check_tenant(tenant)
    total = len(metrics) + len(logs) + len(events)
    if total > MAX_ITEMS:
        raise TelemetryError(f"{total} items in one call; send at most {MAX_ITEMS} (split the batch)")
    rejections: list[Rejection] = []
    good_metrics: list[MetricPoint] = []
    good_logs: list[LogRecord] = []
    good_events: list[EventRecord] = []

    oldest = float("-inf") if retention_seconds is None else now - retention_seconds

    def when(item: _Item) -> float:
        return _when(item.timestamp, now, oldest)

    latest = now + FUTURE_SLACK_SECONDS
    append = good_metrics.append
    for index, raw in _validated(_METRICS, metrics, "metric", rejections):
        ts = raw.get("timestamp")
        if ts.__class__ is not float or not oldest <= ts <= min(latest, 1e11):  # fast path: Unix seconds, in range
            try:
                ts = _when(ts, now, oldest)
            except ValueError as exc:
                rejections.append(Rejection(kind="metric", index=index, reason=str(exc)))
                continue
        append(MetricPoint(tenant, raw["name"], ts, raw["value"], raw.get("dimensions", {}), raw.get("unit"), source))
    for index, lg in _validated(_LOGS, logs, "log", rejections):
        try:
            good_logs.append(LogRecord(tenant, when(lg), lg.message, lg.level, lg.component, lg.attributes, source))
        except ValueError as exc:
            rejections.append(Rejection(kind="log", index=index, reason=str(exc)))
    for index, ev in _validated(_EVENTS, events, "event", rejections):
        try:
            good_events.append(EventRecord(tenant, when(ev), ev.type, ev.detail, source, ev.id))
        except ValueError as exc:
            rejections.append(Rejection(kind="event", index=index, reason=str(exc)))
    rejections.sort(key=lambda r: (_KIND_ORDER[r.kind], r.index))
    return Batch(metrics=good_metrics, logs=good_logs, events=good_events, rejections=rejections)
