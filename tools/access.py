"""Who is calling, and may they: roles and tenants per request.

Over HTTP every request carries an API key; the server's verifier turns it into an ``AccessToken`` whose scopes
name the key's roles (``role:ingest``) and tenants (``tenant:acme``, ``tenant:*`` for every tenant). Over stdio
and the in-memory client there is no token: the caller is the local user, ``admin`` of every tenant.

Roles: ``read`` (query telemetry and host state), ``ingest`` (push telemetry), ``improve`` (propose changes such
as remediation scripts), ``approve`` (approve proposed changes), ``admin`` (everything, including host-wide
changes). ``admin`` implies every other role.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, Literal, get_args

from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.provider import AccessToken
from mcp.server.mcpserver.exceptions import ResourceError

from telemetry.ingest import TENANT_PATTERN
from tools.errors import ToolFailure, shown

Role = Literal["read", "ingest", "improve", "approve", "admin"]
ROLES: Final[tuple[Role, ...]] = get_args(Role)
ALL_TENANTS: Final = "*"
ROLE_SCOPE: Final = "role:"
TENANT_SCOPE: Final = "tenant:"
LOCAL_CALLER: Final = "local"


class AccessDenied(ToolFailure):
    """The caller lacks a role or may not use a tenant. A ``ToolError``, so the model reads the message."""

    def __init__(self, message: str) -> None:
        super().__init__(message, "refused")


@dataclass(frozen=True)
class Caller:
    """The identity behind one request: a key's name (or ``local``), its roles and the tenants it may use."""

    name: str
    roles: frozenset[Role]
    tenants: frozenset[str]

    @property
    def all_tenants(self) -> bool:
        return ALL_TENANTS in self.tenants

    def has_role(self, role: Role) -> bool:
        return role in self.roles or "admin" in self.roles

    def may_use(self, tenant: str) -> bool:
        return self.all_tenants or tenant in self.tenants

    def visible(self, tenants: Iterable[str]) -> list[str]:
        """The tenants of ``tenants`` this caller may see, in the given order."""
        return [t for t in tenants if self.may_use(t)]

    def describe_tenants(self) -> str:
        return "every tenant" if self.all_tenants else ", ".join(sorted(self.tenants)) or "none"


LOCAL = Caller(LOCAL_CALLER, frozenset({"admin"}), frozenset({ALL_TENANTS}))


def scopes_for(roles: Iterable[Role], tenants: Iterable[str]) -> list[str]:
    """The token scopes that encode ``roles`` and ``tenants`` (see ``caller_from_token``)."""
    return [f"{ROLE_SCOPE}{r}" for r in sorted(set(roles))] + [f"{TENANT_SCOPE}{t}" for t in sorted(set(tenants))]


def caller_from_token(token: AccessToken) -> Caller:
    """Read the roles and tenants back from a token's scopes; unknown scopes grant nothing."""
    roles: set[Role] = set()
    tenants: set[str] = set()
    for scope in token.scopes:
        if scope.startswith(ROLE_SCOPE):
            role = scope.removeprefix(ROLE_SCOPE)
            for known in ROLES:
                if role == known:
                    roles.add(known)
        elif scope.startswith(TENANT_SCOPE):
            tenants.add(scope.removeprefix(TENANT_SCOPE))
    return Caller(token.client_id, frozenset(roles), frozenset(tenants))


def current_caller() -> Caller:
    """The caller of the request being served: the key's identity over HTTP, ``LOCAL`` without a token."""
    token = get_access_token()
    return LOCAL if token is None else caller_from_token(token)


def authorize(role: Role, tenant_id: str | None = None) -> Caller:
    """Check that the current caller has ``role`` (and may use ``tenant_id`` when given); return the caller.

    Raises:
        AccessDenied: the caller lacks the role or may not use the tenant; the message says what it may do.
        ToolError: ``tenant_id`` is not a tenant id.
    """
    caller = current_caller()
    if not caller.has_role(role):
        held = ", ".join(sorted(caller.roles)) or "none"
        raise AccessDenied(f"key {caller.name!r} needs role {role!r} for this; it has: {held}")
    if tenant_id is not None and not TENANT_PATTERN.match(tenant_id):
        raise ToolFailure(
            f"tenant_id {shown(tenant_id)} is not valid: use 1-64 letters, digits, '.', '_' or '-', starting with a "
            "letter or digit"
        )
    if tenant_id is not None and not caller.may_use(tenant_id):
        raise AccessDenied(
            f"key {caller.name!r} may not use tenant {shown(tenant_id)}; it may use: {caller.describe_tenants()}"
        )
    return caller


def authorize_resource(role: Role) -> Caller:
    """``authorize`` for resource handlers, where only a ``ResourceError`` message reaches the client.

    Raises:
        ResourceError: the caller lacks the role.
    """
    try:
        return authorize(role)
    except AccessDenied as exc:
        raise ResourceError(str(exc)) from exc
