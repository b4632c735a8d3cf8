"""Settings: read once at start-up from the environment (``SELF_BUILDING_*``) and an optional TOML file.

Precedence, highest first: explicit overrides (CLI flags), environment variables, the TOML file given with
``--config``, then the defaults below.
"""

from __future__ import annotations

import ipaddress
import json
import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict

from telemetry.cloudwatch.config import CloudWatchConfig
from telemetry.learning.logpatterns.formats import compiled_format

LOOPBACK_NAMES = frozenset({"localhost", "ip6-localhost"})


def default_data_dir() -> Path:
    """The XDG user data directory for this application (``$XDG_DATA_HOME/self-building-mcp``)."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "self-building-mcp"


def is_loopback(host: str) -> bool:
    """True when ``host`` only accepts connections from this machine."""
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class ConfigFileError(ValueError):
    """A configuration file (``--config``, or the tenants file) is missing, not valid TOML, or has bad entries."""


class Settings(BaseSettings):
    """Everything the server can be configured with. Each field maps to ``SELF_BUILDING_<FIELD>``."""

    model_config = SettingsConfigDict(
        env_prefix="SELF_BUILDING_", env_nested_delimiter="__", extra="ignore", validate_default=True
    )

    data_dir: Path = Field(default_factory=default_data_dir, description="Where SQLite databases live.")
    database_url: SecretStr | None = Field(
        None,
        description="postgresql://user:password@host:port/database: every store in that PostgreSQL database, shared "
        "by several replicas (unset: SQLite files in the data directory).",
    )
    request_state_key: SecretStr | None = Field(
        None,
        min_length=32,
        description="With several replicas: one secret of at least 32 characters, the same on every replica, that "
        "seals the state a 2026 client carries from one request to its retry (unset: a random key per process, so "
        "only the replica that made it can open it).",
    )
    validation_on_workers: bool = Field(
        False,
        description="With PostgreSQL: generated code is validated, and the improvement cycle's benchmarks run, by "
        "`self-building-mcp worker` processes, which take the jobs from a queue in the database (a job no worker takes "
        "within worker_claim_seconds runs here).",
    )
    worker_claim_seconds: float = Field(
        30.0, gt=0, le=3600, description="How long a job waits for a worker before the server runs it itself."
    )
    lease_seconds: float = Field(
        15.0,
        ge=1.5,
        le=600,
        description="With PostgreSQL: how long a replica that stops answering may hold the lease of the background "
        "work (retention, self-analysis, CloudWatch streaming, the schedule, adopting stopped replicas' cycles) "
        "before another takes it; a replica that dies outright frees it at once.",
    )
    workspace: Path = Field(
        default_factory=lambda data: Path(data["data_dir"]) / "workspace",
        description="Workspace the server writes scripts and code into (default: 'workspace' in the data directory, "
        "created on first use; never the current directory).",
    )
    http_host: str = Field("127.0.0.1", description="Address the HTTP transport binds to.")
    http_port: int = Field(8765, ge=0, le=65535, description="Port of the HTTP transport (0 picks a free one).")
    mcp_api_key: SecretStr | None = Field(
        None, description="Bearer key required on /mcp when set; an admin key of every tenant."
    )
    tenants_file: Path | None = Field(
        None,
        description="TOML file of API keys, each with the tenants it may use and its roles (see server/tenants.py).",
    )
    allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Host headers accepted on /mcp (DNS-rebinding protection); loopback names are always allowed.",
    )
    allowed_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Origin headers accepted on /mcp; loopback origins are always allowed."
    )
    http_max_connections: int = Field(
        1_000,
        ge=8,
        le=1_000_000,
        description="Open HTTP connections at most (keep it below the process's open-file limit); at the cap the "
        "connection that has waited longest without sending a request is closed to make room.",
    )
    http_read_timeout_seconds: float = Field(
        10.0,
        gt=0,
        le=600,
        description="A request head must be complete this long after the connection is ready for one; a body may "
        "pause at most this long.",
    )
    http_request_timeout_seconds: float = Field(
        60.0, gt=0, le=3600, description="A request body must be complete within this of its head; else 408 and close."
    )
    http_keepalive_timeout_seconds: float = Field(
        5.0, gt=0, le=600, description="An idle keep-alive connection is closed after this."
    )
    http_write_timeout_seconds: float = Field(
        30.0,
        gt=0,
        le=3600,
        description="A client that takes none of what the server sends it for this long is disconnected.",
    )
    legacy_sessions_per_key: int = Field(
        32, ge=1, le=10_000, description="Open legacy (2025-era) MCP sessions per API key; the oldest is closed first."
    )
    legacy_session_idle_seconds: float = Field(
        600.0, ge=5, le=86_400, description="A legacy MCP session with no request for this long is closed."
    )
    notification_queue_max: int = Field(
        256,
        ge=1,
        le=100_000,
        description="Notifications waiting per client connection; beyond it the oldest are dropped (and counted).",
    )
    notification_stall_seconds: float = Field(
        30.0,
        gt=0,
        le=3600,
        description="A client connection that has taken no notification for this long is dropped from push.",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Log level (stderr).")
    metrics_open_on_loopback: bool = Field(
        False, description="Serve GET /metrics without a key to clients on this machine (a local Prometheus)."
    )

    monitoring_autostart: bool = Field(False, description="Start threshold monitoring when the server starts.")
    monitoring_interval_seconds: float = Field(30.0, ge=0.05, le=3600, description="Default sampling interval.")
    status_max_age_seconds: float = Field(
        5.0,
        ge=0,
        le=3600,
        description="A status snapshot older than this is refreshed before it is served (0: always).",
    )
    events_max_count: int = Field(10_000, ge=10, description="Monitoring events kept (oldest pruned first).")
    events_max_age_days: float = Field(30.0, gt=0, description="Monitoring events older than this are pruned.")

    default_tenant: str = Field(
        "default", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", description="Tenant for data without one."
    )
    analysis_max_concurrency: int = Field(
        2,
        ge=1,
        le=64,
        description="Heavy analyses (insights, error patterns, self-analysis) that run at once, each in a worker "
        "thread; the others wait their turn off the event loop, and ingests and status queries never wait for them.",
    )
    store_read_connections: int = Field(
        4,
        ge=0,
        le=64,
        description="Read connections of the telemetry store: queries never wait for an ingest or each other while "
        "one is free (0: every read waits for the one writing connection).",
    )
    telemetry_retention_days: float = Field(14.0, gt=0, description="Telemetry older than this is pruned.")
    anomaly_max_series: int = Field(
        1_000, ge=1, le=100_000, description="Series with a live anomaly detector at once (each holds ~100 KB)."
    )
    analysis_process: bool = Field(
        True,
        description="Run the anomaly detectors and the per-series analysis of insights in a child process, on "
        "another core, so that requests never wait for them (false: in the server's own process, as threads).",
    )
    log_formats: dict[str, str] = Field(
        default_factory=dict,
        description="Log line formats by source: a CloudWatch log group's name, or the log_source attribute of "
        "pushed logs, to a format such as '<Date> <Time> <Level> <Component>: <Content>'. Other sources' header "
        "layouts are learned from their first lines.",
    )

    cloudwatch: CloudWatchConfig = Field(
        default_factory=CloudWatchConfig,
        description="What to stream from CloudWatch: JSON in SELF_BUILDING_CLOUDWATCH, variables such as "
        "SELF_BUILDING_CLOUDWATCH__REGION, or a [self_building.cloudwatch] table.",
    )

    llm_base_url: str | None = Field(
        None, description="OpenAI-compatible endpoint for code generation (else OPENAI_BASE_URL, else OpenAI)."
    )
    llm_model: str | None = Field(None, description="Model for code generation; unset = no LLM (generation off).")
    llm_api_key: SecretStr | None = Field(None, description="API key for the LLM endpoint (else OPENAI_API_KEY).")
    llm_timeout_seconds: float = Field(
        120.0,
        gt=0,
        description="Most seconds of silence from the LLM (answers stream): before the first token, while the "
        "prompt is read, and between tokens. A model that keeps writing is not cut by it.",
    )
    llm_max_request_seconds: float = Field(
        1800.0, gt=0, description="Most seconds one LLM request may take in all, however steadily it streams."
    )
    llm_max_retries: int = Field(
        2, ge=0, le=10, description="Retries of a request that failed to connect or got 429/5xx (never mid-answer)."
    )
    llm_max_concurrency: int | None = Field(
        None,
        ge=1,
        le=64,
        description="LLM requests in flight at once; default 1 for an endpoint on this machine (a local model "
        "serves one at a time), 4 otherwise.",
    )
    llm_max_tokens_per_cycle: int = Field(
        300_000, ge=1, description="Most LLM tokens (prompt and answer) one improvement cycle may spend."
    )
    llm_max_tokens_per_tenant_day: int = Field(
        2_000_000, ge=1, description="Most LLM tokens one tenant may spend per UTC day (generation and cycles)."
    )
    llm_price_per_million_prompt_tokens: float | None = Field(
        None, ge=0, description="Price of a million prompt tokens (e.g. in USD); with it, money caps apply."
    )
    llm_price_per_million_completion_tokens: float | None = Field(
        None, ge=0, description="Price of a million completion tokens (same currency)."
    )
    llm_max_cost_per_cycle: float | None = Field(None, ge=0, description="Most money one cycle may spend.")
    llm_max_cost_per_tenant_day: float | None = Field(
        None, ge=0, description="Most money one tenant may spend per UTC day."
    )

    enable_self_building: bool = Field(True, description="Allow the self-building tools (later releases).")
    enable_cloudwatch_streaming: bool = Field(False, description="Stream telemetry from AWS CloudWatch.")
    enable_autonomous_improvements: bool = Field(False, description="Run improvement cycles without a caller.")
    enable_component_generation: bool = Field(True, description="Allow generation of new components.")
    enable_improvement_rollback: bool = Field(True, description="Roll back deployments that regress.")

    generation_max_rounds: int = Field(
        3, ge=1, le=10, description="Ask → apply → validate rounds per generation before it fails with the report."
    )
    generation_min_coverage_percent: float = Field(
        80.0,
        ge=0,
        le=100,
        description="Line coverage of the changed lines that a change's tests must reach in the sandbox.",
    )
    generation_prompt_tokens: int = Field(
        3000,
        ge=500,
        le=200_000,
        description="Token budget of a generation or improvement prompt; the context that matters most is chosen "
        "to fit.",
    )
    validation_test_timeout_seconds: float = Field(
        120.0, gt=0, description="Wall-clock limit of the sandboxed test run of generated code (killed after)."
    )
    sandbox: Literal["bwrap", "none"] = Field(
        "bwrap",
        description="The jail of generated code (its tests, benchmarks): bubblewrap, or 'none' to run it with the "
        "server's own user, files and network (a risk the operator takes; start-up warns, status shows it).",
    )
    sandbox_bwrap: str = Field("bwrap", description="The bubblewrap program (a name on PATH, or a path).")
    sandbox_uid: int = Field(
        65534, ge=1, description="The user generated code runs as when the server runs as root (nobody)."
    )
    sandbox_max_processes: int = Field(
        64,
        ge=8,
        le=100_000,
        description="Processes (threads included) a jailed run may have (kept below a unit's TasksMax).",
    )

    improvement_monitoring_seconds: float = Field(
        3600.0, gt=0, description="How long a deployed improvement is watched before it is kept or rolled back."
    )
    improvement_regression_percent: float = Field(
        10.0, gt=0, description="A change this much worse (benchmark, metric or error rate) is rolled back."
    )
    improvement_benchmark_runs: int = Field(
        5, ge=2, le=50, description="Benchmark runs per side (interleaved) before the first statistical test."
    )
    improvement_benchmark_max_runs: int = Field(
        20, ge=2, le=200, description="Most benchmark runs per side when the first ones cannot tell."
    )
    improvement_confidence: float = Field(
        0.95, ge=0.5, le=0.999, description="Confidence a verdict needs that old and new code differ."
    )
    improvement_min_effect_percent: float = Field(
        5.0, ge=0, le=100, description="Smallest improvement of the opportunity's metric that counts as better."
    )
    improvement_candidates_per_opportunity: int = Field(
        1, ge=1, le=8, description="Candidates generated per opportunity; the best measured one is deployed."
    )
    improvement_benchmark_timeout_seconds: float = Field(120.0, gt=0, description="Per benchmark or test run.")
    improvement_max_concurrency: int = Field(2, ge=1, le=16, description="Candidates of a cycle worked at once.")
    improvement_review_required: bool = Field(False, description="Hold every improvement for approval.")
    improvement_review_components: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Components whose improvements wait for approval (comma-separated)."
    )
    improvement_wait_seconds: float = Field(
        300.0, ge=0, description="How long trigger_improvement_cycle waits for the cycle before answering."
    )
    autonomous_interval_hours: float = Field(24.0, gt=0, description="Autonomous cycles run this often.")
    autonomous_tenants: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Tenants autonomous cycles cover (default: the default tenant)."
    )
    critical_alarms: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["HighErrorRate", "HighLatency"],
        description="CloudWatch alarms that start an emergency cycle for their Component when they enter ALARM.",
    )

    self_analysis_interval_hours: float = Field(
        1.0, ge=0, description="How often the server analyses its own tool calls into insights (0 = never)."
    )
    self_analysis_tenant: str = Field(
        "default",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$",
        description="Tenant whose insights and opportunities carry the server's findings about itself.",
    )
    self_analysis_slow_seconds: float = Field(
        2.0, gt=0, description="A tool whose calls take longer than this at the 95th percentile is slow (a finding)."
    )
    tool_calls_retention_days: float = Field(30.0, gt=0, description="Recorded tool calls older than this go.")

    enable_cloudwatch_publishing: bool = Field(False, description="Publish the server's own metrics to CloudWatch.")
    cloudwatch_publish_namespace: str = Field(
        "SelfBuildingMCP", min_length=1, max_length=255, description="CloudWatch namespace of the published metrics."
    )
    cloudwatch_publish_interval_seconds: float = Field(
        60.0, ge=1, le=3600, description="How often the server's metrics are sent to CloudWatch (one batch)."
    )

    dashboard_update_seconds: float = Field(
        2.0, ge=0.2, le=60, description="How often the browser dashboard refreshes its live figures."
    )

    @field_validator(
        "allowed_hosts",
        "allowed_origins",
        "improvement_review_components",
        "autonomous_tenants",
        "critical_alarms",
        mode="before",
    )
    @classmethod
    def _split_csv(cls, value: Any) -> Any:
        if isinstance(value, str):
            if value.lstrip().startswith("["):
                return json.loads(value)
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("log_formats")
    @classmethod
    def _log_formats(cls, value: dict[str, str]) -> dict[str, str]:
        for source, spec in value.items():
            try:
                compiled_format(spec)
            except ValueError as exc:
                raise ValueError(f"{source!r}: {exc}") from None
        return value

    @field_validator(
        "mcp_api_key",
        "tenants_file",
        "llm_api_key",
        "llm_base_url",
        "llm_model",
        "database_url",
        "request_state_key",
        mode="before",
    )
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return None if value == "" else value

    @field_validator("database_url")
    @classmethod
    def _postgresql_only(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith(("postgresql://", "postgres://")):
            raise ValueError("database_url must start with postgresql:// (unset it to keep SQLite)")
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, env_settings

    @property
    def events_db_path(self) -> Path:
        return self.data_dir / "monitoring.sqlite3"

    @property
    def telemetry_db_path(self) -> Path:
        return self.data_dir / "telemetry.sqlite3"

    @property
    def scripts_dir(self) -> Path:
        return self.workspace / "scripts"
