"""What to stream from CloudWatch, and how."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Statistic = Literal["Average", "Sum", "Minimum", "Maximum", "SampleCount"]


class MetricWatch(BaseModel):
    """One metric to follow. Without dimensions, every dimension set ListMetrics finds for it is followed."""

    model_config = ConfigDict(extra="forbid")

    namespace: str = Field(description="CloudWatch namespace, e.g. AWS/EC2 or MyApp.")
    metric_name: str = Field(description="Metric name, e.g. CPUUtilization.")
    dimensions: dict[str, str] | None = Field(None, description="Exact dimensions; omit to follow every set found.")
    stat: Statistic = Field("Average", description="Statistic to fetch.")
    period: int = Field(60, ge=1, description="Period in seconds.")


class CloudWatchConfig(BaseModel):
    """Connection, what to watch, and the limits of streaming."""

    model_config = ConfigDict(extra="forbid")

    region: str = Field("us-east-1", description="AWS region.")
    profile: str | None = Field(None, description="AWS profile name (default credentials chain when unset).")
    endpoint_url: str | None = Field(None, description="Endpoint override (else AWS_ENDPOINT_URL, else AWS).")
    default_tenant: str = Field("default", description="Tenant for items without a TenantId.")
    poll_interval_seconds: float = Field(60.0, gt=0, description="Seconds between polls of metrics, logs, alarms.")
    metrics: list[MetricWatch] = Field(default_factory=list, description="Metrics to stream.")
    metric_lookback_seconds: float = Field(
        86_400.0,
        gt=0,
        description="How far back the first fetch of a series goes (once per series: later fetches, restarts "
        "included, go on from its last stored point). A day: query_telemetry_insights' default window.",
    )
    discovery_refresh_seconds: float = Field(600.0, gt=0, description="How often ListMetrics discovery is refreshed.")
    log_groups: list[str] = Field(default_factory=list, description="Log groups to stream.")
    log_group_prefixes: list[str] = Field(default_factory=list, description="Stream every log group with a prefix.")
    log_filter_pattern: str = Field("", description="CloudWatch Logs filter pattern (empty: every event).")
    log_lookback_seconds: float = Field(
        300.0,
        gt=0,
        description="How far back the first log fetch after each start goes. The log cursor lives in memory: a "
        "restart reads this window again and stores its events once more, so longer means more duplicates.",
    )
    log_overlap_seconds: float = Field(
        120.0,
        ge=0,
        description="Each poll re-reads this much before the newest event read (late events); "
        "events already read are skipped by their eventId.",
    )
    max_log_events_per_poll: int = Field(
        10_000, ge=1, description="Above this many events in one poll window, a uniform sample of this size is kept."
    )
    alarm_names: list[str] = Field(default_factory=list, description="Alarms to follow by name.")
    alarm_name_prefix: str | None = Field(None, description="Follow every alarm whose name starts with this.")
    alarm_cache_seconds: float = Field(
        60.0, ge=0, description="get_alarm_states calls DescribeAlarms at most this often; events apply at once."
    )
    sqs_queue_url: str | None = Field(
        None, description="SQS queue receiving EventBridge alarm state changes; without it alarm states are polled."
    )
    sqs_wait_seconds: int = Field(20, ge=0, le=20, description="SQS long-poll wait.")
    dedup_window_seconds: float = Field(300.0, gt=0, description="Events with the same id within this are dropped.")
    breaker_failure_threshold: int = Field(
        3,
        ge=1,
        description="Failed polls in a row (each after its retries) that open a source's breaker: about 2 minutes "
        "at the 60 s poll interval.",
    )
    breaker_cooldown_seconds: float = Field(30.0, gt=0, description="Seconds an open breaker waits before a probe.")
    retry_attempts: int = Field(4, ge=1, le=10, description="Tries per AWS call for throttling and transient errors.")
    retry_initial_seconds: float = Field(0.5, gt=0, description="First backoff; it doubles per try, with jitter.")

    @property
    def watches_anything(self) -> bool:
        return bool(
            self.metrics
            or self.log_groups
            or self.log_group_prefixes
            or self.alarm_names
            or self.alarm_name_prefix
            or self.sqs_queue_url
        )
