"""NAB figures of the anomaly detector: the full score and leave-one-category-out cross-validation.

The category folders under the NAB root are the folds. For each fold, the configuration that scores best on the
*other* folds is chosen from a small grid of the detector's meaningful settings (the recent window and the quiet
spell that ends an event; the thresholds are in units of each series' own scale) and scored on the fold left out.
A fold without labelled windows (no anomalies) has no normalised score: its false alarms are printed instead.
Scoring is the shared harness's own code (``/work/shared/harness/nab_score.py``, its ``file_score``), run in this
process so the grid stays cheap.

Run: python -m tests.benchmarks.nab_cv [NAB_ROOT] [--grid]   (without --grid: only the default configuration)
"""

from __future__ import annotations

import csv
import importlib.util
import itertools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

from telemetry.learning.anomaly import DetectorConfig, SeriesDetector, parse_timestamp

NAB_ROOT = Path("/work/shared/data/nab")
SCORER = Path("/work/shared/harness/nab_score.py")
# Two settings with a meaning in points: how many recent points the level signal takes the median of, and how long
# a detection holds further ones back. The thresholds are not in the grid (they are in units of each series' scale).
GRID: dict[str, list[object]] = {
    "level_window": [5, 10, 20],
    "suppress": [150, 300, 600],
}
FileResult = tuple[float, float, float, int]  # score, null, perfect, detections outside every window


def load_scorer(path: Path = SCORER) -> ModuleType:
    spec = importlib.util.spec_from_file_location("nab_score", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load the NAB scorer from {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_files(root: Path, labels: dict[str, list[list[str]]]) -> dict[str, list[tuple[str, float, float]]]:
    files = {}
    for name in sorted(labels):
        with (root / name).open(newline="") as handle:
            rows = list(csv.DictReader(handle))
        files[name] = [(r["timestamp"], parse_timestamp(r["timestamp"]), float(r["value"])) for r in rows]
    return files


def run_config(
    config: DetectorConfig,
    files: dict[str, list[tuple[str, float, float]]],
    labels: dict[str, list[list[str]]],
    file_score: Callable[..., tuple[float, float, float]],
    norm_ts: Callable[[str], str],
) -> dict[str, FileResult]:
    out: dict[str, FileResult] = {}
    for name, rows in files.items():
        update = SeriesDetector(config).update
        detected = [update(ts, value).anomaly for _, ts, value in rows]
        stamps = [norm_ts(stamp) for stamp, _, _ in rows]
        score, null, perfect = file_score(stamps, detected, labels[name])
        outside = _outside(stamps, detected, labels[name], norm_ts)
        out[name] = (score, null, perfect, outside)
    return out


def _outside(stamps: list[str], detected: list[bool], windows: list[list[str]], norm_ts: Callable[[str], str]) -> int:
    index = {t: i for i, t in enumerate(stamps)}
    spans = [(index[norm_ts(a)], index[norm_ts(b)]) for a, b in windows]
    prob = min(int(0.15 * len(stamps)), 750)
    return sum(1 for i, hit in enumerate(detected) if hit and i >= prob and not any(a <= i <= b for a, b in spans))


def normalised(results: dict[str, FileResult], names: list[str]) -> float | None:
    score = sum(results[n][0] for n in names)
    null = sum(results[n][1] for n in names)
    perfect = sum(results[n][2] for n in names)
    return None if perfect == null else 100.0 * (score - null) / (perfect - null)


def describe(results: dict[str, FileResult], names: list[str]) -> str:
    value = normalised(results, names)
    false_alarms = sum(results[n][3] for n in names)
    figure = "n/a (no labelled windows)" if value is None else f"{value:6.2f}"
    return f"{figure}, {false_alarms} detections outside the windows"


def main(argv: list[str]) -> None:
    root = Path(argv[0]) if argv and not argv[0].startswith("--") else NAB_ROOT
    scorer = load_scorer()
    labels = json.loads((root / "labels_windows.json").read_text())
    files = load_files(root, labels)
    folds = sorted({name.split("/")[0] for name in files})
    by_fold = {fold: [n for n in files if n.startswith(fold + "/")] for fold in folds}
    default = DetectorConfig()
    configs = [default]
    if "--grid" in argv:
        keys = list(GRID)
        for combo in itertools.product(*(GRID[k] for k in keys)):
            candidate = default.model_copy(update=dict(zip(keys, combo, strict=True)))
            if candidate != default:
                configs.append(candidate)
    results = [run_config(c, files, labels, scorer.file_score, scorer.norm_ts) for c in configs]
    names = list(files)
    print(f"full, default configuration: {describe(results[0], names)} over {len(names)} files")
    for fold in folds:
        print(f"  {fold}: {describe(results[0], by_fold[fold])}")
    if len(configs) == 1:
        return
    pooled: dict[str, FileResult] = {}
    held_out = []
    for fold in folds:
        train = [n for n in names if not n.startswith(fold + "/")]
        best = max(range(len(configs)), key=lambda i: normalised(results[i], train) or 0.0)
        chosen = {k: getattr(configs[best], k) for k in GRID}
        for n in by_fold[fold]:
            pooled[n] = results[best][n]
        value = normalised(results[best], by_fold[fold])
        if value is not None:
            held_out.append(value)
        print(f"LOCO {fold}: chose {chosen} on the others; held out: {describe(results[best], by_fold[fold])}")
    mean = sum(held_out) / len(held_out) if held_out else float("nan")
    print(f"LOCO mean of the scorable folds: {mean:.2f}; pooled held-out score: {describe(pooled, names)}")


if __name__ == "__main__":
    main(sys.argv[1:])
