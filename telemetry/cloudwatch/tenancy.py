"""Tenant routing for CloudWatch items: a ``TenantId`` names the tenant when it is a valid tenant id."""

from __future__ import annotations

import logging

from telemetry.ingest import TENANT_PATTERN

logger = logging.getLogger(__name__)
TENANT_KEY = "TenantId"


def tenant_for(value: object, default: str) -> str:
    """``value`` when it is a valid tenant id, else ``default``: no tool could query a tenant by an invalid id, so
    its items would be lost from sight."""
    if value is None:
        return default
    text = str(value)
    if TENANT_PATTERN.match(text):  # the rule ingest_telemetry applies to tenant_id
        return text
    logger.debug("TenantId %r is not a valid tenant id; the item goes to tenant %r", text[:80], default)
    return default
