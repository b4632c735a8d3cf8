"""How much the detector's NAB figures hang on each of its settings: every setting alone at half, three quarters, one
and a half and twice its default, the others at theirs.

A setting whose figures stay flat around its default does not need the value it has; one with a sharp peak at its
default was fitted to this data, and the held-out figure of a detector sitting on such a peak is about the mean of
its neighbours, not the peak. Each row prints the full score, each scorable category and the detections on the
category without anomalies. Scoring is the shared harness's (see :mod:`tests.benchmarks.nab_cv`).

Run: python -m tests.benchmarks.nab_sensitivity [NAB_ROOT]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from telemetry.learning.anomaly import DetectorConfig
from tests.benchmarks.nab_cv import NAB_ROOT, FileResult, load_files, load_scorer, normalised, run_config

FACTORS = (0.5, 0.75, 1.5, 2.0)


def _scaled(value: float | int, factor: float) -> float | int:
    return value * factor if isinstance(value, float) else max(1, round(value * factor))


def main(argv: list[str]) -> None:
    root = Path(argv[0]) if argv else NAB_ROOT
    scorer = load_scorer()
    labels = json.loads((root / "labels_windows.json").read_text())
    files = load_files(root, labels)
    names = list(files)
    folds = sorted({name.split("/")[0] for name in names})

    def figures(config: DetectorConfig) -> str:
        results: dict[str, FileResult] = run_config(config, files, labels, scorer.file_score, scorer.norm_ts)
        parts = [f"full {normalised(results, names) or 0.0:5.1f}"]
        for fold in folds:
            members = [n for n in names if n.startswith(fold + "/")]
            value = normalised(results, members)
            outside = sum(results[n][3] for n in members)
            parts.append(f"{fold[:12]} {'fp ' + str(outside) if value is None else f'{value:5.1f}'}")
        return " / ".join(parts)

    default = DetectorConfig()
    out = sys.stdout
    out.write(f"default: {figures(default)}\n")
    for name in DetectorConfig.model_fields:
        value = getattr(default, name)
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        out.write(f"{name} = {value}\n")
        for factor in FACTORS:
            try:
                config = DetectorConfig.model_validate({**default.model_dump(), name: _scaled(value, factor)})
            except ValueError:
                continue  # outside the setting's range
            out.write(f"  x{factor:<4} {getattr(config, name)!s:>8}: {figures(config)}\n")
        out.flush()


if __name__ == "__main__":
    main(sys.argv[1:])
