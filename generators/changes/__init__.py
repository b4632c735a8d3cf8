"""The application layer of deployed changes: what every front end (the MCP tools, resources, the dashboard) asks of
them, in one place — a new component generated and deployed, visibility per tenant, rollback, approval and
rejection, with their audit trail."""

from generators.changes.generation import ComponentOutcome, ComponentRequest, ComponentService
from generators.changes.service import ChangeService, DecisionListener, Viewer, restored

__all__ = [
    "ChangeService",
    "ComponentOutcome",
    "ComponentRequest",
    "ComponentService",
    "DecisionListener",
    "Viewer",
    "restored",
]
