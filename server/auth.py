"""Bearer API-key authentication for ``/mcp`` (HTTP only: stdio and in-memory clients are local).

Each accepted key becomes an ``AccessToken`` whose ``client_id`` is the key's name and whose scopes carry
``mcp`` (required on every request), the key's roles (``role:ingest``) and tenants (``tenant:acme``,
``tenant:*``); ``tools.access`` reads them back. Keys are compared as SHA-256 digests, in constant time, against
every configured key; neither keys nor digests are ever logged.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

from mcp.server.auth.provider import AccessToken, TokenVerifier
from mcp.server.auth.settings import AuthSettings
from pydantic import AnyHttpUrl

from server.settings import Settings
from server.settings_load import access_keys
from server.tenants import LEGACY_KEY_NAME, ApiKey, legacy_key
from tools.access import scopes_for

API_KEY_CLIENT = LEGACY_KEY_NAME
SCOPE = "mcp"


class KeyVerifier(TokenVerifier):
    """Accepts any of the configured keys; the token says which key it was and what it may do."""

    def __init__(self, keys: Sequence[ApiKey]) -> None:
        self._keys = tuple(keys)

    async def verify_token(self, token: str) -> AccessToken | None:
        digest = hashlib.sha256(token.encode()).digest()
        match: ApiKey | None = None
        for key in self._keys:  # every key is compared, so timing does not tell which one matched
            if hmac.compare_digest(digest, key.sha256):
                match = key
        if match is None:
            return None
        return AccessToken(
            token="<api-key>", client_id=match.name, scopes=[SCOPE, *scopes_for(match.roles, match.tenants)]
        )


class StaticKeyVerifier(KeyVerifier):
    """Accepts exactly one key (``SELF_BUILDING_MCP_API_KEY``), as an admin key of every tenant."""

    def __init__(self, key: str) -> None:
        super().__init__([legacy_key(key)])


def key_verifier(settings: Settings) -> KeyVerifier | None:
    """The verifier for every configured key, or None when no key is configured (HTTP then needs none).

    Raises:
        ConfigFileError: the tenants file is invalid.
    """
    keys = access_keys(settings)
    return KeyVerifier(keys) if keys else None


def auth_settings() -> AuthSettings:
    """The SDK requires an issuer URL even for static keys; nothing is served from it."""
    return AuthSettings(
        issuer_url=AnyHttpUrl("https://auth.invalid"), resource_server_url=None, required_scopes=[SCOPE]
    )
