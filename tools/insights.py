"""``query_telemetry_insights``: trends, degradations, anomalies and error patterns, with ranked opportunities."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Protocol

import anyio.to_thread
from mcp.server.mcpserver import Context, MCPServer
from mcp.types import ToolAnnotations
from pydantic import BaseModel, Field

from telemetry.ingest import check_tenant
from telemetry.learning.engine import Analysis
from telemetry.learning.insights import Insight, InsightKind, InsightSummary, Opportunity, Risk
from tools.access import authorize
from tools.errors import domain_errors
from tools.services import Services, ServicesOf
from tools.shared_runs import SharedRuns

if TYPE_CHECKING:  # what the services are, for the type checker
    from telemetry.learning.engine import LearningEngine


class Needs(Protocol):
    """What the insights tools use of the server's services (:class:`tools.services.Services` has them all)."""

    @property
    def learning(self) -> LearningEngine: ...

    @property
    def analyses(self) -> anyio.CapacityLimiter | None: ...

    @property
    def insight_runs(self) -> SharedRuns[Analysis]: ...


class InsightsResult(BaseModel):
    tenant_id: str = Field(description="Tenant analysed.")
    time_range_hours: float = Field(description="Window, hours, ending now.")
    insights: list[Insight] = Field(description="Most severe first, this server's own host last, then by impact.")
    has_more: bool = Field(description="True: more than `limit`.")
    opportunities: list[Opportunity] = Field(
        description="Improvement opportunities, highest impact first (at most `limit`)."
    )
    opportunities_has_more: bool = Field(description="True: more than `limit`.")
    summary: InsightSummary = Field(description="Counts over the whole window.")


def register(server: MCPServer, deps: ServicesOf[Needs]) -> None:
    """Add the insight tools to ``server``."""

    @server.tool(title="Telemetry insights", annotations=ToolAnnotations(read_only_hint=True, open_world_hint=False))
    async def query_telemetry_insights(
        ctx: Context[Services, Any],
        metric_name: Annotated[str | None, Field(description="Only this metric (default: every series).")] = None,
        time_range_hours: Annotated[float, Field(gt=0, le=24 * 90, description="Window, in hours (max 90 days).")] = 24,
        tenant_id: Annotated[str, Field(description="Tenant whose telemetry to analyse.")] = "default",
        kinds: Annotated[list[InsightKind] | None, Field(description="Only these kinds.")] = None,
        limit: Annotated[int, Field(ge=1, le=200, description="Most insights to return (1-200).")] = 20,
        risk_tolerance: Annotated[Risk, Field(description="Leave out riskier opportunities.")] = "high",
    ) -> InsightsResult:
        """What a tenant's telemetry says: trends, degradations against the baseline, anomalies and error patterns with
        their evidence, and improvement opportunities ranked by impact. A series' baseline is its history in the window
        but the newest quarter. Needs `read` on the tenant.
        """
        authorize("read", tenant_id)
        svc = deps(ctx)
        with domain_errors():
            check_tenant(tenant_id)
        analysis = await svc.insight_runs.run(  # identical questions waiting at once: one analysis, after all came
            (tenant_id, time_range_hours, metric_name, risk_tolerance),
            lambda: svc.learning.analyze(
                tenant_id, window_hours=time_range_hours, metric_name=metric_name, risk_tolerance=risk_tolerance
            ),
            svc.analyses,  # a few at once: ingests and status never wait for analyses
        )
        chosen = [i for i in analysis.insights if kinds is None or i.kind in kinds]
        chosen_ids = {i.id for i in chosen}
        opportunities = [o for o in analysis.opportunities if chosen_ids.intersection(o.insight_ids)]
        return InsightsResult(
            tenant_id=tenant_id,
            time_range_hours=time_range_hours,
            insights=chosen[:limit],
            has_more=len(chosen) > limit,
            opportunities=opportunities[:limit],
            opportunities_has_more=len(opportunities) > limit,
            summary=analysis.summary,
        )
