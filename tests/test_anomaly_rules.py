"""The detector's general rules on synthetic series: what each signal finds, what none of them may call an anomaly.

Every series here is generated: noise of several shapes, a level shift, a spike, a change of variance, a daily cycle
that stops. The decisions go through the public API only (``SeriesDetector.update``).
"""

from __future__ import annotations

import json
import math
import random

import pytest

from telemetry.learning.anomaly import SeriesDetector

STEP = 300.0  # five-minute points
START = 1_700_000_000.0
DAY = int(86400 / STEP)


def flagged(values: list[float]) -> list[int]:
    det = SeriesDetector()
    return [i for i, v in enumerate(values) if det.update(START + i * STEP, v).anomaly]


def gaussian(n: int, seed: int, level: float = 50.0, sd: float = 2.0) -> list[float]:
    rng = random.Random(seed)
    return [level + rng.gauss(0.0, sd) for _ in range(n)]


def test_false_alarms_on_120000_points_of_plain_noise_stay_at_most_todays() -> None:
    """30 series of 4,000 Gaussian points: the detector before issue 14 raised 11 alarms here; no more allowed."""
    alarms = sum(len(flagged(gaussian(4000, seed))) for seed in range(30))
    assert alarms <= 11


@pytest.mark.parametrize("shape", ["lognormal", "uniform", "counts"])
def test_noise_of_other_shapes_raises_almost_nothing(shape: str) -> None:
    """Skewed, bounded and discrete noise: the detector's scales are learned per series, so each shape is its own
    normal. Small integer counts reach a new highest value one step above the old one now and then: that step is the
    series' resolution, not a spike."""
    rng = random.Random(11)

    def draw() -> float:
        if shape == "lognormal":
            return math.exp(rng.gauss(3.0, 0.5))
        if shape == "uniform":
            return rng.uniform(10.0, 20.0)
        return float(sum(rng.random() < 0.05 for _ in range(40)))  # small integer counts, many ties

    alarms = sum(len(flagged([draw() for _ in range(4000)])) for _ in range(3))
    assert alarms <= 3, f"{alarms} alarms on 12,000 points of {shape} noise"


def test_a_slow_trend_is_not_an_anomaly() -> None:
    """A metric that creeps up (a growing table, a filling disk) keeps reaching new highs, by a little each time:
    on 60,000 points of trend plus noise, at most two alarms."""
    alarms = 0
    for seed in range(10):
        rng = random.Random(seed)
        alarms += len(flagged([20.0 + 0.02 * i + rng.gauss(0.0, 1.0) for i in range(6000)]))
    assert alarms <= 2


def test_a_level_shift_within_the_old_range_is_reported_at_its_start() -> None:
    """A shift of 3 standard deviations: every shifted point is inside the range the noise has already covered."""
    values = gaussian(3000, 21, sd=1.0) + gaussian(1000, 22, level=53.0, sd=1.0)
    hits = flagged(values)
    assert hits and 3000 <= hits[0] <= 3012, hits
    assert len(hits) <= 2


def test_a_downward_spike_is_reported_once() -> None:
    values = gaussian(3000, 23)
    values[2500] = 30.0
    assert flagged(values) == [2500]


def test_a_change_of_variance_is_reported() -> None:
    """The same level, three times the noise: a service that starts to thrash."""
    values = gaussian(3000, 24, sd=1.0) + gaussian(1000, 25, sd=3.0)
    hits = flagged(values)
    assert hits and 3000 <= hits[0] < 3060, hits


def test_a_daily_cycle_that_stops_is_reported_within_hours() -> None:
    """Ten days of a daily cycle, then it stops at its mean level (a batch job that no longer runs): every point
    after the stop is inside the normal band, only the cycle is missing, and it fades out gradually."""
    rng = random.Random(31)
    values = [50 + 20 * math.sin(2 * math.pi * i / DAY) + rng.gauss(0, 1) for i in range(10 * DAY)]
    values += [50 + rng.gauss(0, 1) for _ in range(2 * DAY)]
    hits = flagged(values)
    assert hits and 10 * DAY <= hits[0] < 10 * DAY + DAY // 8, hits


def test_a_series_that_only_jumps_still_reports_a_new_extreme() -> None:
    """Its smallest step is its whole range: a resolution that large must not hide a value twice as high."""
    rng = random.Random(32)
    values = [100.0 * rng.randrange(2) for _ in range(3000)] + [200.0]
    assert 3000 in flagged(values)


def test_detections_do_not_depend_on_the_units() -> None:
    """Bytes or gigabytes, an offset or none: the same series gives the same decisions."""
    values = gaussian(3000, 27) + gaussian(500, 28, level=58.0)
    values[1800] = 75.0
    assert flagged(values) == flagged([1e6 * v + 3e9 for v in values])


def test_state_stays_bounded_however_long_the_series() -> None:
    det = SeriesDetector()
    sizes = []
    for i, v in enumerate(gaussian(20_000, 29)):
        det.update(START + i * STEP, v)
        if i in (9_999, 19_999):
            sizes.append(len(json.dumps(det.state_dict())))
    assert sizes[1] <= sizes[0] * 1.01
