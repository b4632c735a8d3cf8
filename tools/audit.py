"""``query_audit_log``: who generated, validated, deployed, rolled back or approved what, and when.

Role ``read``, filtered to the tenants the caller may use: a tenant's readers may see who changed their code, and a
key limited to some tenants never sees another tenant's entries. Keys for every tenant see every entry.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Protocol

import anyio.to_thread
from mcp.server.mcpserver import Context, MCPServer
from mcp.types import ToolAnnotations
from pydantic import BaseModel, Field

from generators.deploy import AuditEntry, AuditLog, AuditPage
from tools.access import Caller, authorize
from tools.monitoring import parse_since
from tools.services import Services, ServicesOf

if TYPE_CHECKING:  # what the services are, for the type checker
    from telemetry.clock import Clock


class Needs(Protocol):
    """What the audit tools use of the server's services (:class:`tools.services.Services` has them all)."""

    @property
    def audit(self) -> AuditLog: ...

    @property
    def clock(self) -> Clock: ...


class AuditRecord(BaseModel):
    id: int = Field(description="Entry number (increasing).")
    ts: float = Field(description="Unix time written.")
    actor: str = Field(description="Key (or 'local', 'recovery').")
    tenant_id: str = Field(description="Tenant concerned.")
    kind: str = Field(description="What happened: deployment, rollback, ...")
    subject: str = Field(description="Usually a deployment id.")
    detail: dict[str, Any] = Field(description="Facts: reason, paths, commit, ...")


class AuditLogResult(BaseModel):
    entries: list[AuditRecord] = Field(description="Entries newest first.")
    has_more: bool = Field(description="True: more than `limit`.")
    since: float | None = Field(description="Time bound applied (Unix); null: none.")


def query_visible(log: AuditLog, caller: Caller, since: float | None, kind: str | None, limit: int) -> AuditPage:
    """Entries of the tenants ``caller`` may use, newest first, capped at ``limit``."""
    if caller.all_tenants:
        return log.query(since, kind, limit)
    pages = [log.query(since, kind, limit, tenant) for tenant in sorted(caller.tenants)]
    entries = sorted((e for p in pages for e in p.entries), key=lambda e: (e.ts, e.id), reverse=True)
    return AuditPage(entries[:limit], len(entries) > limit or any(p.has_more for p in pages))


def _record(e: AuditEntry) -> AuditRecord:
    return AuditRecord(
        id=e.id, ts=e.ts, actor=e.actor, tenant_id=e.tenant, kind=e.kind, subject=e.subject, detail=e.detail
    )


def register(server: MCPServer, deps: ServicesOf[Needs]) -> None:
    """Add the audit-log tool to ``server``."""

    @server.tool(title="Audit log", annotations=ToolAnnotations(read_only_hint=True, open_world_hint=False))
    async def query_audit_log(
        ctx: Context[Services, Any],
        since: Annotated[
            float | str | None,
            Field(
                description="Only entries at or after: Unix seconds, ISO 8601 (2026-11-25T10:00:00Z) or an age '2h'."
            ),
        ] = None,
        kind: Annotated[
            str | None, Field(max_length=64, description="Only this kind (deployment, rollback, approval_decision...).")
        ] = None,
        limit: Annotated[int, Field(ge=1, le=500, description="Most entries to return (1-500).")] = 50,
    ) -> AuditLogResult:
        """The append-only audit log (generation, validation, deployment, rollback, approval), newest first, for the
        tenants this key may use.
        """
        caller = authorize("read")
        svc = deps(ctx)
        start = parse_since(since, svc.clock())
        page = await anyio.to_thread.run_sync(query_visible, svc.audit, caller, start, kind, limit)
        return AuditLogResult(entries=[_record(e) for e in page.entries], has_more=page.has_more, since=start)
