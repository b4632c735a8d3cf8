"""Bearer API-key authentication for ``/mcp`` (HTTP only: stdio and in-memory clients are local)."""

from __future__ import annotations

import hmac

from mcp.server.auth.provider import AccessToken, TokenVerifier
from mcp.server.auth.settings import AuthSettings
from pydantic import AnyHttpUrl

API_KEY_CLIENT = "api-key-client"
SCOPE = "mcp"


class StaticKeyVerifier(TokenVerifier):
    """Accepts exactly one key, compared in constant time."""

    def __init__(self, key: str) -> None:
        self._key = key.encode()

    async def verify_token(self, token: str) -> AccessToken | None:
        if hmac.compare_digest(token.encode(), self._key):
            return AccessToken(token="<api-key>", client_id=API_KEY_CLIENT, scopes=[SCOPE])
        return None


def auth_settings() -> AuthSettings:
    """The SDK requires an issuer URL even for static keys; nothing is served from it."""
    return AuthSettings(
        issuer_url=AnyHttpUrl("https://auth.invalid"), resource_server_url=None, required_scopes=[SCOPE]
    )
