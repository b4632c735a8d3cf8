"""The application layer of deployed changes: what every front end (the MCP tools, resources, the dashboard) asks of
them, in one place — visibility per tenant, rollback, approval and rejection, with their audit trail."""

from generators.changes.service import ChangeService, DecisionListener, Viewer

__all__ = ["ChangeService", "DecisionListener", "Viewer"]
