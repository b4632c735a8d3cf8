"""The streaming anomaly detector: what it finds, what it leaves alone, causality, state and the CLI contract."""

from __future__ import annotations

import io
import json
import math
import random
import subprocess
import sys
from collections import deque
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from telemetry.learning.anomaly import AnomalyDetector, DetectorConfig, SeriesDetector, detect_csv, parse_timestamp
from telemetry.learning.anomaly.reference import FloatRing

STEP = 300.0  # five-minute points, as in NAB
START = 1_700_000_000.0


def noisy(n: int, seed: int = 1, level: float = 50.0, sd: float = 2.0) -> list[float]:
    rng = random.Random(seed)
    return [level + rng.gauss(0.0, sd) for _ in range(n)]


def run(values: list[float], config: DetectorConfig | None = None) -> list[bool]:
    det = SeriesDetector(config)
    return [det.update(START + i * STEP, v).anomaly for i, v in enumerate(values)]


def flagged(values: list[float]) -> list[int]:
    return [i for i, hit in enumerate(run(values)) if hit]


def test_stationary_noise_raises_nothing() -> None:
    assert flagged(noisy(4000)) == []


def test_daily_cycle_is_learned_not_reported() -> None:
    rng = random.Random(7)
    period = int(86400 / STEP)
    values = [50 + 20 * math.sin(2 * math.pi * i / period) + rng.gauss(0, 1) for i in range(period * 10)]
    assert flagged(values) == []


def test_a_spike_is_reported_once_at_its_start() -> None:
    values = noisy(3000)
    values[2000] = 120.0
    assert flagged(values) == [2000]


def test_a_level_shift_is_reported_near_its_start() -> None:
    values = noisy(2000) + noisy(1500, seed=2, level=75.0)
    hits = flagged(values)
    assert hits, "a shift of 12 standard deviations went unnoticed"
    assert 2000 <= hits[0] <= 2010
    assert len(hits) <= 2


def test_a_burst_of_oscillation_is_reported() -> None:
    values = noisy(2500, sd=0.5)
    for i in range(2000, 2100):
        values[i] += 3.0 if i % 2 else -3.0  # stays inside the old range, but the series starts to thrash
    hits = flagged(values)
    assert hits and 2000 <= hits[0] < 2100


def test_nothing_is_reported_during_warmup() -> None:
    values = noisy(400)
    values[100] = 500.0
    assert flagged(values) == []


def test_a_decision_uses_only_points_up_to_it() -> None:
    values = noisy(3000, seed=3)
    values[1500] = 90.0
    values[2500:] = [v + 30 for v in values[2500:]]
    det_full = SeriesDetector()
    full = [det_full.update(START + i * STEP, v) for i, v in enumerate(values)]
    det_prefix = SeriesDetector()
    prefix = [det_prefix.update(START + i * STEP, v) for i, v in enumerate(values[:2000])]
    assert prefix == full[:2000]


def test_non_finite_values_leave_the_state_alone() -> None:
    det = SeriesDetector()
    for i, v in enumerate(noisy(500)):
        det.update(START + i * STEP, v)
    before = json.dumps(det.state_dict())
    assert det.update(START + 501 * STEP, float("nan")) == (0.0, False)
    assert det.update(START + 502 * STEP, float("inf")) == (0.0, False)
    assert json.dumps(det.state_dict()) == before


def test_state_survives_a_json_round_trip_and_continues_identically() -> None:
    values = noisy(3000, seed=4)
    values[2600] = 99.0
    a = SeriesDetector()
    for i, v in enumerate(values[:1234]):
        a.update(START + i * STEP, v)
    b = SeriesDetector.from_state(json.loads(json.dumps(a.state_dict())))
    rest = list(enumerate(values))[1234:]
    assert [a.update(START + i * STEP, v) for i, v in rest] == [b.update(START + i * STEP, v) for i, v in rest]


def test_unknown_state_version_is_refused() -> None:
    with pytest.raises(ValueError, match="unsupported detector state version"):
        SeriesDetector.from_state({"version": 99})


def test_registry_keeps_series_apart_and_bounded() -> None:
    reg = AnomalyDetector(max_series=2)
    reg.update("a", START, 1.0)
    reg.update("b", START, 1.0)
    reg.update("a", START + STEP, 1.0)
    reg.update("c", START, 1.0)  # b was updated longest ago
    assert "b" not in reg and "a" in reg and "c" in reg
    assert reg.evicted == 1 and len(reg) == 2
    assert reg.count("a") == 2


def test_registry_ignores_points_out_of_order() -> None:
    reg = AnomalyDetector()
    assert reg.update("a", START + 10, 1.0) is not None
    assert reg.update("a", START + 5, 1.0) is None
    assert reg.update("a", START + 10, 1.0) is None
    assert reg.count("a") == 1


def test_config_is_validated() -> None:
    with pytest.raises(ValueError):
        DetectorConfig(warmup=0)
    with pytest.raises(ValueError):
        AnomalyDetector(max_series=0)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1700000000", 1_700_000_000.0),
        ("2014-04-01 00:05:00", 1396310700.0),
        ("2014-04-01T00:05:00+00:00", 1396310700.0),
    ],
)
def test_timestamps_are_parsed(text: str, expected: float) -> None:
    assert parse_timestamp(text) == expected


def write_csv(path: Path, values: list[float | str]) -> None:
    stamps = [datetime.fromtimestamp(START + i * STEP, UTC).strftime("%Y-%m-%d %H:%M:%S") for i in range(len(values))]
    rows = ["timestamp,value"] + [f"{t},{v}" for t, v in zip(stamps, values, strict=True)]
    path.write_text("\n".join(rows) + "\n")


def test_detect_csv_writes_one_verdict_per_row(tmp_path: Path) -> None:
    values: list[float | str] = [float(round(v, 3)) for v in noisy(280)] + ["not-a-number"]
    csv_path = tmp_path / "series.csv"
    write_csv(csv_path, values)
    out = io.StringIO()
    assert detect_csv(csv_path, out) == 0
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert len(lines) == len(values)
    assert lines[0]["timestamp"] == "2023-11-14 22:13:20"
    assert set(lines[0]) == {"timestamp", "value", "score", "anomaly"}
    assert lines[-1] == {"timestamp": lines[-1]["timestamp"], "value": None, "score": 0.0, "anomaly": False}
    assert all(0.0 <= line["score"] <= 1.0 for line in lines)


def test_cli_detect_anomalies_contract(tmp_path: Path) -> None:
    values: list[float | str] = list(noisy(600))
    values[500] = 400.0
    csv_path = tmp_path / "series.csv"
    write_csv(csv_path, values)
    done = subprocess.run(
        [sys.executable, "-m", "server", "detect-anomalies", str(csv_path)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(rows) == 600
    assert [i for i, r in enumerate(rows) if r["anomaly"]] == [500]


def test_cli_detect_anomalies_rejects_a_file_without_the_header(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("when,amount\n1,2\n")
    done = subprocess.run(
        [sys.executable, "-m", "server", "detect-anomalies", str(bad)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert done.stdout == ""
    assert "timestamp,value" in done.stderr


@settings(max_examples=200, deadline=None)
@given(maxlen=st.integers(1, 40), values=st.lists(st.floats(allow_nan=False), max_size=200), k=st.integers(0, 50))
def test_a_float_ring_holds_what_a_bounded_deque_holds(maxlen: int, values: list[float], k: int) -> None:
    """The detector's windows keep machine floats in a ring: oldest first, the newest ``k`` newest first, exactly as
    the ``deque(maxlen=...)`` they replaced (so every verdict and snapshot stays as it was)."""
    ring, reference = FloatRing(maxlen), deque[float](maxlen=maxlen)
    for value in values:
        ring.append(value)
        reference.append(value)
        assert len(ring) == len(reference)
    assert list(ring) == list(reference)
    assert ring.newest(k) == list(islice(reversed(reference), k))
