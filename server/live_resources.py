"""The server object: ``MCPServer`` with the compact tool surface (:mod:`tools.surface`), whose resource list also
names the deployments that want attention (held for approval, or deployed and being watched by an improvement cycle),
filtered to the caller's tenants, and that announces tools added or removed while it runs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from mcp.types import Resource as MCPResource
from prometheus_client import CollectorRegistry

from generators.deploy import Deployment
from server.change_feed import ChangeFeed, Watched, deployment_uri
from server.notifications import Notifier
from tools.access import current_caller
from tools.surface import ToolSurface

logger = logging.getLogger(__name__)


class SelfBuildingServer(ToolSurface):  # ToolSurface: compact tool list, argument errors in the tools' words
    """``MCPServer`` whose resource list also names the deployments that want attention (``watched``), filtered
    to the tenants of the caller; that tells clients when a tool is added or removed while it runs (``feed``); and
    that tells long-lived HTTP streams when the server stops."""

    watched: Watched | None = None
    feed: ChangeFeed | None = None
    notifier: Notifier | None = None
    metrics_registry: CollectorRegistry | None = None  # the HTTP transport adds its connection figures to it
    on_http_stop: list[Callable[[], None]]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.on_http_stop = []  # run when the HTTP server starts to stop (before it waits for open connections)

    def add_tool(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        super().add_tool(fn, *args, **kwargs)
        if self.feed is not None:
            self.feed.mark([], tools=True)

    def remove_tool(self, name: str) -> None:
        super().remove_tool(name)
        if self.feed is not None:
            self.feed.mark([], tools=True)

    async def list_resources(self) -> list[MCPResource]:
        resources = await super().list_resources()
        if self.watched is not None:
            caller = current_caller()  # the request's key: a tenant-limited key sees its tenants' deployments only
            if caller.has_role("read"):
                resources += [_resource(d) for d in await self.watched() if caller.may_use(d.tenant)]
        return resources


def _resource(d: Deployment) -> MCPResource:
    what = "held for approval" if d.status == "pending_approval" else "deployed and being watched"
    return MCPResource(
        uri=deployment_uri(d.id),
        name=f"deployment_{d.id}",
        title=f"Deployment of {d.component} ({d.tenant})",
        description=f"{d.component}: {what}. Updated when its status or figures change.",
        mime_type="application/json",
    )
