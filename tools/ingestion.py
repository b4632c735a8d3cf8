"""``ingest_telemetry``: agents push their own metrics, logs and events."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Protocol

import anyio.to_thread
from mcp.server.mcpserver import Context, MCPServer
from mcp.types import ToolAnnotations
from pydantic import BaseModel, Field

from telemetry.ingest import MAX_ITEMS, MAX_REJECTIONS_LISTED, Accepted, Rejection, validate_batch
from tools.access import authorize
from tools.errors import bounded, domain_errors
from tools.services import Services, ServicesOf

if TYPE_CHECKING:  # what the services are, for the type checker
    from telemetry.clock import Clock
    from telemetry.store.records import TelemetryStore


_ITEM_NOTE = f"At most {MAX_ITEMS} items in all per call."
REASON_CHARS = 300  # a reason may quote the item (a timestamp, a dimension name): never a megabyte of it, 100 times


class Needs(Protocol):
    """What the ingestion tools use of the server's services (:class:`tools.services.Services` has them all)."""

    @property
    def clock(self) -> Clock: ...

    @property
    def retention_seconds(self) -> float: ...

    @property
    def telemetry(self) -> TelemetryStore: ...


class IngestResult(BaseModel):
    tenant_id: str = Field(description="Tenant stored under.")
    accepted: Accepted = Field(description="Items stored, by kind.")
    rejected: int = Field(description="Items refused (nothing else was dropped).")
    rejections: list[Rejection] = Field(description=f"Why, per refused item (the first {MAX_REJECTIONS_LISTED}).")
    has_more: bool = Field(description="True: more were refused than listed.")


def register(server: MCPServer, deps: ServicesOf[Needs]) -> None:
    """Add the telemetry tools to ``server``."""

    @server.tool(title="Ingest telemetry", annotations=ToolAnnotations(open_world_hint=False))
    async def ingest_telemetry(
        ctx: Context[Services, Any],
        tenant_id: Annotated[str, Field(description="Tenant (letters, digits, . _ -).")],
        metrics: Annotated[
            list[Any],
            Field(
                description="Metric points: {name, value, timestamp?, unit?, dimensions?}. timestamp is Unix "
                'seconds or ISO 8601 (default now); dimensions is a string map, e.g. {"Component": "api"}. '
                + _ITEM_NOTE
            ),
        ] = [],  # noqa: B006 - the SDK builds the schema from this default; it is never mutated
        logs: Annotated[
            list[Any],
            Field(
                description="Log records: {message, level?, timestamp?, component?, attributes?}; attributes "
                "log_source, log_format: a raw line's source and layout."
            ),
        ] = [],  # noqa: B006
        events: Annotated[
            list[Any],
            Field(description="Events: {type, detail, timestamp?, id?}; an id is stored once."),
        ] = [],  # noqa: B006
    ) -> IngestResult:
        """Store the metrics, logs and events an agent pushes for a tenant. Valid items are stored even when others are
        refused; each refused one is reported with its reason. Needs `ingest` on the tenant.
        """
        authorize("ingest", tenant_id)
        svc = deps(ctx)
        with domain_errors():
            batch = validate_batch(
                tenant_id, metrics, logs, events, now=svc.clock(), retention_seconds=svc.retention_seconds
            )
        store = svc.telemetry

        def write() -> Accepted:
            stored_events = store.add_events(batch.events) if batch.events else 0
            return Accepted(
                metrics=store.add_metrics(batch.metrics),
                logs=store.add_logs(batch.logs) if batch.logs else 0,
                events=stored_events,
                duplicate_events=len(batch.events) - stored_events,
            )

        accepted = await anyio.to_thread.run_sync(write)
        return IngestResult(
            tenant_id=tenant_id,
            accepted=accepted,
            rejected=len(batch.rejections),
            rejections=[
                r.model_copy(update={"reason": bounded(r.reason, REASON_CHARS)})
                for r in batch.rejections[:MAX_REJECTIONS_LISTED]
            ],
            has_more=len(batch.rejections) > MAX_REJECTIONS_LISTED,
        )
