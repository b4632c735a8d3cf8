"""Benchmark of SettingsFile.get: prints milliseconds for 200 reads of a 2,000-line settings file (lower is better)."""

import sys
import tempfile
import time
from pathlib import Path

from components.settings_file import SettingsFile

with tempfile.TemporaryDirectory() as folder:
    path = Path(folder) / "service.conf"
    path.write_text("".join(f"key{i} = value {i}\n" for i in range(2000)), encoding="utf-8")
    settings = SettingsFile(path)
    started = time.perf_counter()
    for i in range(200):
        settings.get(f"key{i * 10}")
    elapsed = time.perf_counter() - started
sys.stdout.write(f"{elapsed * 1000:.3f}\n")
