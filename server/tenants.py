"""The tenants file: which API keys exist, which tenants each may use and with which roles.

A TOML file (``SELF_BUILDING_TENANTS_FILE``) with one ``[[keys]]`` table per key::

    [[keys]]
    name = "ci-agent"                      # shown in logs and errors; never the key itself
    key_sha256 = "9f86d0...0f00a08"        # SHA-256 of the key, hex: printf %s "$KEY" | sha256sum
    tenants = ["acme", "beta"]             # or ["*"] for every tenant
    roles = ["read", "ingest"]             # read, ingest, improve, approve, admin (admin implies all)

    [[keys]]
    name = "ops"
    key_env = "OPS_MCP_KEY"                # or: the environment variable that holds the key
    tenants = ["*"]
    roles = ["admin"]

Plaintext keys are refused. Every problem is reported at once, naming the file and the entry, and the server
does not start. The single ``SELF_BUILDING_MCP_API_KEY`` stays valid as an admin key of every tenant.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from telemetry.ingest import TENANT_PATTERN
from tools.access import ALL_TENANTS, ROLES, Role

LEGACY_KEY_NAME: Final = "api-key-client"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")
_FIELDS: Final = frozenset({"name", "description", "key_sha256", "key_env", "tenants", "roles"})


class TenantsFileError(ValueError):
    """The tenants file is missing, not TOML, or describes keys that cannot be used; the message says where."""


@dataclass(frozen=True)
class ApiKey:
    """One accepted key: its name, the SHA-256 of its value, its tenants (``*`` = every tenant) and roles."""

    name: str
    sha256: bytes = field(repr=False)
    tenants: frozenset[str]
    roles: frozenset[Role]


def hash_key(key: str) -> bytes:
    """The SHA-256 digest a key is stored and compared as."""
    return hashlib.sha256(key.encode()).digest()


def legacy_key(key: str) -> ApiKey:
    """``SELF_BUILDING_MCP_API_KEY``: admin of every tenant."""
    return ApiKey(LEGACY_KEY_NAME, hash_key(key), frozenset({ALL_TENANTS}), frozenset({"admin"}))


def access_keys(tenants_file: Path | None, single_key: str | None, environ: Mapping[str, str]) -> tuple[ApiKey, ...]:
    """Every accepted key: the single legacy key (when set) and those of the tenants file (when given).

    Raises:
        TenantsFileError: the file cannot be read or an entry is invalid (unknown role, no tenants, a key listed
            twice, an unset ``key_env`` variable, ...).
    """
    keys = [legacy_key(single_key)] if single_key else []
    if tenants_file is not None:
        file_keys = load_tenants_file(tenants_file, environ)
        for key in file_keys:
            if keys and key.sha256 == keys[0].sha256:
                raise TenantsFileError(
                    f"tenants file {tenants_file}: key {key.name!r} is the same key as SELF_BUILDING_MCP_API_KEY; "
                    "give it its own key"
                )
            if key.name == LEGACY_KEY_NAME and single_key:
                raise TenantsFileError(
                    f"tenants file {tenants_file}: the name {LEGACY_KEY_NAME!r} is taken by SELF_BUILDING_MCP_API_KEY"
                )
        keys += file_keys
    return tuple(keys)


def load_tenants_file(path: Path, environ: Mapping[str, str]) -> list[ApiKey]:
    """Parse and validate the tenants file at ``path``; ``environ`` resolves ``key_env`` entries.

    Raises:
        TenantsFileError: with every problem found, each naming the entry.
    """
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError as exc:
        raise TenantsFileError(f"tenants file {path} does not exist") from exc
    except OSError as exc:
        raise TenantsFileError(f"tenants file {path} cannot be read: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise TenantsFileError(f"tenants file {path} is not valid TOML: {exc}") from exc
    problems: list[str] = []
    unknown = sorted(set(data) - {"keys"})
    if unknown:
        problems.append(f"unknown top-level entr{'y' if len(unknown) == 1 else 'ies'} {', '.join(unknown)}")
    entries = data.get("keys")
    keys: list[ApiKey] = []
    if not isinstance(entries, list) or not entries:
        problems.append("no keys: add at least one [[keys]] table with name, key_sha256 (or key_env), tenants, roles")
        entries = []
    names: dict[str, int] = {}
    digests: dict[bytes, str] = {}
    for number, entry in enumerate(entries, start=1):
        key, entry_problems = _parse_entry(entry, environ)
        label = f"[[keys]] #{number}" + (f" ({entry['name']!r})" if isinstance(entry, dict) and "name" in entry else "")
        problems += [f"{label}: {p}" for p in entry_problems]
        if key is None:
            continue
        if key.name in names:
            problems.append(f"{label}: name {key.name!r} is already used by [[keys]] #{names[key.name]}")
        names.setdefault(key.name, number)
        if key.sha256 in digests:
            problems.append(f"{label}: the same key as {digests[key.sha256]!r}; each key must be listed once")
        digests.setdefault(key.sha256, key.name)
        keys.append(key)
    if problems:
        raise TenantsFileError(f"tenants file {path}: " + "; ".join(problems))
    return keys


def _parse_entry(entry: Any, environ: Mapping[str, str]) -> tuple[ApiKey | None, list[str]]:
    """One ``[[keys]]`` table: the key, or None and what is wrong with it."""
    if not isinstance(entry, dict):
        return None, ["must be a table"]
    problems: list[str] = []
    if "key" in entry:
        problems.append(
            "plaintext 'key' is not accepted: store key_sha256 (printf %s \"$KEY\" | sha256sum) or key_env "
            "(the name of an environment variable holding the key)"
        )
    unknown = sorted(set(entry) - _FIELDS - {"key"})
    if unknown:
        problems.append(f"unknown field(s) {', '.join(unknown)} (fields: {', '.join(sorted(_FIELDS))})")
    name = entry.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        problems.append("name must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit")
    digest = _key_digest(entry, environ, problems)
    tenants = _string_list(entry, "tenants", problems)
    bad_tenants = [t for t in tenants if t != ALL_TENANTS and not TENANT_PATTERN.match(t)]
    if bad_tenants:
        problems.append(f"invalid tenant id(s) {', '.join(map(repr, bad_tenants))} (use letters, digits, . _ - or '*')")
    role_names = _string_list(entry, "roles", problems)
    unknown_roles = [r for r in role_names if r not in ROLES]
    if unknown_roles:
        problems.append(f"unknown role(s) {', '.join(map(repr, unknown_roles))} (roles: {', '.join(ROLES)})")
    if problems or digest is None or not isinstance(name, str):
        return None, problems
    roles = frozenset(r for r in ROLES if r in role_names)
    return ApiKey(name, digest, frozenset(tenants), roles), []


def _key_digest(entry: Mapping[str, Any], environ: Mapping[str, str], problems: list[str]) -> bytes | None:
    sha, env = entry.get("key_sha256"), entry.get("key_env")
    if (sha is None) == (env is None):
        if "key" not in entry:
            problems.append("give exactly one of key_sha256 or key_env")
        return None
    if sha is not None:
        if not isinstance(sha, str) or not _SHA256.match(sha):
            problems.append('key_sha256 must be 64 hex digits (printf %s "$KEY" | sha256sum)')
            return None
        return bytes.fromhex(sha)
    if not isinstance(env, str) or not _ENV_NAME.match(env):
        problems.append("key_env must name an environment variable")
        return None
    value = environ.get(env, "")
    if not value:
        problems.append(f"key_env: environment variable {env} is not set or empty")
        return None
    return hash_key(value)


def _string_list(entry: Mapping[str, Any], field_name: str, problems: list[str]) -> Sequence[str]:
    value = entry.get(field_name)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        problems.append(f"{field_name} must be a list of strings")
        return []
    if not value:
        problems.append(f"{field_name} is empty: list at least one")
    return value
