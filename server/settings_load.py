"""Settings loaded once at start-up (the TOML file, the environment, the command line's overrides), and what the
other parts are configured with from them: the LLM client's configuration and the API keys."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr

from server.settings import ConfigFileError, Settings

if TYPE_CHECKING:
    from generators.llm import LLMConfig
    from server.tenants import ApiKey


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError as exc:
        raise ConfigFileError(f"config file {path} does not exist") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigFileError(f"config file {path} is not valid TOML: {exc}") from exc
    # Allow both a flat file and one with a [self_building] table.
    table = data.get("self_building", data)
    if not isinstance(table, dict):
        raise ConfigFileError(f"config file {path}: [self_building] must be a table")
    return table


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Build the settings once: TOML file (lowest), then environment, then non-None ``overrides`` (highest)."""
    file_values = _read_toml(config_file) if config_file is not None else {}
    known = set(Settings.model_fields)
    unknown = sorted(set(file_values) - known)
    if unknown:
        raise ConfigFileError(f"config file {config_file}: unknown setting(s) {', '.join(unknown)}")
    tenants_file = file_values.get("tenants_file")
    if isinstance(tenants_file, str) and config_file is not None and not Path(tenants_file).expanduser().is_absolute():
        file_values["tenants_file"] = str(config_file.parent / tenants_file)  # relative to the file that names it
    env_values = Settings().model_dump(exclude_unset=True)
    merged = _deep_merge(file_values, env_values)
    merged.update({k: v for k, v in overrides.items() if v is not None})
    settings = Settings.model_validate(merged)
    access_keys(settings)  # a bad tenants file stops start-up here, with the other configuration errors
    return settings


def _deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """``top`` over ``base``; tables (e.g. ``cloudwatch``) merge key by key instead of replacing each other."""
    out = dict(base)
    for key, value in top.items():
        below = out.get(key)
        out[key] = _deep_merge(below, value) if isinstance(below, dict) and isinstance(value, dict) else value
    return out


def llm_config(settings: Settings, environ: Mapping[str, str] | None = None) -> LLMConfig:
    """The LLM client's configuration: ``SELF_BUILDING_LLM_*``, else ``OPENAI_API_KEY`` / ``OPENAI_BASE_URL``."""
    from generators.llm import LLMConfig, SpendCaps

    env = os.environ if environ is None else environ
    key = settings.llm_api_key.get_secret_value() if settings.llm_api_key else env.get("OPENAI_API_KEY") or None
    return LLMConfig(
        base_url=settings.llm_base_url or env.get("OPENAI_BASE_URL") or None,
        model=settings.llm_model,
        api_key=SecretStr(key) if key else None,
        timeout_seconds=settings.llm_timeout_seconds,
        max_request_seconds=settings.llm_max_request_seconds,
        max_concurrency=settings.llm_max_concurrency,
        max_retries=settings.llm_max_retries,
        caps=SpendCaps(
            max_tokens_per_cycle=settings.llm_max_tokens_per_cycle,
            max_tokens_per_tenant_day=settings.llm_max_tokens_per_tenant_day,
            price_per_million_prompt_tokens=settings.llm_price_per_million_prompt_tokens,
            price_per_million_completion_tokens=settings.llm_price_per_million_completion_tokens,
            max_cost_per_cycle=settings.llm_max_cost_per_cycle,
            max_cost_per_tenant_day=settings.llm_max_cost_per_tenant_day,
        ),
    )


def access_keys(settings: Settings) -> tuple[ApiKey, ...]:
    """The API keys accepted over HTTP: ``mcp_api_key`` (admin of every tenant) and the tenants file's keys.

    Reads the environment for the file's ``key_env`` entries.

    Raises:
        ConfigFileError: the tenants file is missing, not TOML, or has an invalid entry; the message names both.
    """
    # Imported here: server.tenants imports tools, which must wait until the package guard has run (server.cli).
    from server.tenants import TenantsFileError
    from server.tenants import access_keys as load_keys

    single = settings.mcp_api_key.get_secret_value() if settings.mcp_api_key else None
    try:
        return load_keys(settings.tenants_file, single, os.environ)
    except TenantsFileError as exc:
        raise ConfigFileError(str(exc)) from exc
