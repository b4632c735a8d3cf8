"""The detector's one configuration: every series, live or offline, runs with these defaults."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class DetectorConfig(BaseModel):
    """Parameters of :class:`.SeriesDetector`; the defaults are the tuned, shared configuration.

    Thresholds are in units of the learned scale of each signal, so the same values apply to any metric.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    warmup: int = Field(300, ge=1, description="points seen before any anomaly may be raised")
    refresh: int = Field(32, ge=1, description="points between refreshes of the reference quantiles and maxima")
    quantile_window: int = Field(1000, ge=20, description="recent points the quantiles and scales are taken over")
    memory: int = Field(4000, ge=32, description="points over which the extremes of each signal are remembered")
    min_history: int = Field(20, ge=2, description="points a reference needs before its signal is scored")
    level_window: int = Field(10, ge=1, description="points in the running median compared against the quantiles")
    level_tail: float = Field(0.01, ge=0.0, lt=0.5, description="tail mass outside the normal band of values")
    activity_window: int = Field(60, ge=2, description="points in the running mean of absolute first differences")
    season_seconds: float = Field(86400.0, gt=0, description="length of the seasonal cycle (one day)")
    season_cycles: int = Field(3, ge=1, description="past cycles whose median is the seasonal expectation")
    season_max_period: int = Field(2880, ge=2, description="most points per cycle for which seasonality is modelled")
    season_min_period: int = Field(24, ge=2, description="fewest points per cycle for which seasonality is modelled")
    season_min_history: int = Field(288, ge=2, description="seasonal residuals needed before that signal is scored")
    season_gate: float = Field(
        0.2, gt=0, description="seasonal signal only while the typical residual is below this share of the value band"
    )
    season_floor: float = Field(
        0.2, gt=0, description="smallest seasonal scale, as a share of the value band (ignores tiny wiggles)"
    )
    spike_threshold: float = Field(0.12, gt=0, description="excess beyond the remembered range, in ranges")
    level_threshold: float = Field(0.2, gt=0, description="running median outside the normal band, in bands")
    activity_floor: float = Field(
        1.0, ge=0, description="smallest activity scale, as a share of its remembered maximum (ignores tiny rises)"
    )
    activity_threshold: float = Field(0.05, gt=0, description="activity beyond its remembered maximum, in its range")
    season_threshold: float = Field(0.4, gt=0, description="seasonal residual beyond its remembered maximum, in scales")
    suppress: int = Field(300, ge=0, description="points after a detection during which further ones are held back")
    rearm: float = Field(
        3.0, ge=1.0, description="a held-back point still fires when its score is this many times the last"
    )
