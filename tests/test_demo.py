"""The README's demo command runs a full cycle against the scripted LLM: one change kept, one rolled back."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_demo_keeps_the_faster_change_and_rolls_back_the_slower_one() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "demo" / "run_demo.py")],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "- slow_stats: KEPT" in done.stdout and "- word_index: ROLLED_BACK" in done.stdout
    assert "word_index.py is byte-identical to before: True" in done.stdout and "demo passed" in done.stdout
