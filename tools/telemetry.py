"""``ingest_telemetry``: agents push their own metrics, logs and events."""

from __future__ import annotations

from typing import Annotated, Any

import anyio.to_thread
from mcp.server.mcpserver import Context, MCPServer
from mcp.types import ToolAnnotations
from pydantic import BaseModel, Field

from telemetry.ingest import MAX_ITEMS, MAX_REJECTIONS_LISTED, Accepted, Rejection, validate_batch
from tools.access import authorize
from tools.errors import domain_errors
from tools.services import Services, services

_ITEM_NOTE = f"At most {MAX_ITEMS} items in all per call."


class IngestResult(BaseModel):
    tenant_id: str = Field(description="Tenant the items were stored under.")
    accepted: Accepted = Field(description="How many items of each kind were stored.")
    rejected: int = Field(description="How many items were refused (nothing else was dropped).")
    rejections: list[Rejection] = Field(description=f"Why, per refused item (the first {MAX_REJECTIONS_LISTED}).")
    has_more: bool = Field(description="True when more items were refused than are listed.")


def register(server: MCPServer) -> None:
    """Add the telemetry tools to ``server``."""

    @server.tool(title="Ingest telemetry", annotations=ToolAnnotations(open_world_hint=False))
    async def ingest_telemetry(
        ctx: Context[Services, Any],
        tenant_id: Annotated[str, Field(description="Tenant the data belongs to (letters, digits, . _ -).")],
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
            Field(description="Log records: {message, level?, timestamp?, component?, attributes?}."),
        ] = [],  # noqa: B006
        events: Annotated[
            list[Any],
            Field(description="Events: {type, detail, timestamp?, id?}; a repeated id is stored once."),
        ] = [],  # noqa: B006
    ) -> IngestResult:
        """Store telemetry an agent pushes, under a tenant. Valid items are stored even when others are refused;
        every refused item is reported with its list, index and reason. Nothing is dropped silently.
        Needs the `ingest` role on the tenant.
        """
        authorize("ingest", tenant_id)
        svc = services(ctx)
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
            rejections=batch.rejections[:MAX_REJECTIONS_LISTED],
            has_more=len(batch.rejections) > MAX_REJECTIONS_LISTED,
        )
