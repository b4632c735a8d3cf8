"""Tenant routing for CloudWatch items: a ``TenantId`` names the tenant when it is a valid tenant id."""

from __future__ import annotations

import logging
import re

logger = logging.getLogger(__name__)
TENANT_KEY = "TenantId"
_VALID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")  # the same rule as ingest_telemetry's tenant_id


def tenant_for(value: object, default: str) -> str:
    """``value`` when it is a valid tenant id, else ``default``: no tool could query a tenant by an invalid id, so
    its items would be lost from sight."""
    if value is None:
        return default
    text = str(value)
    if _VALID.match(text):
        return text
    logger.debug("TenantId %r is not a valid tenant id; the item goes to tenant %r", text[:80], default)
    return default
