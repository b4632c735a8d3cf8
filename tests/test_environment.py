"""The shell's server settings (``SELF_BUILDING_*``, ``OPENAI_*``) never reach a test: a developer with a model
configured runs the same suite as CI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_the_shells_server_settings_do_not_reach_a_test() -> None:
    env = {
        **os.environ,
        "SELF_BUILDING_LLM_MODEL": "from-the-shell",
        "SELF_BUILDING_LOG_LEVEL": "DEBUG",
        "OPENAI_API_KEY": "sk-from-the-shell",
        "SELF_BUILDING_REQUIRE_BROWSER": "probe",
    }
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-n", "0", "tests/env_probe.py"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "1 passed" in done.stdout
