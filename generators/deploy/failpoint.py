"""A fault-injection point for crash tests of a running server: stop a deploy or rollback transaction at a chosen
step and wait there to be killed.

The spec is ``STEP:INDEX:MARKER`` (``SELF_BUILDING_DEPLOY_FAILPOINT``): when the transaction reaches its INDEX-th
STEP (``journaled``, ``temp_written``, ``replaced``, ``deleted``, ``committed``), the process writes its pid to the
file MARKER and sleeps. Meant for tests and drills only; unset (the default), nothing is hooked.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from generators.deploy.transaction import StepHook
from generators.errors import DeployError

STEPS = ("journaled", "temp_written", "replaced", "deleted", "committed")


def failpoint_hook(spec: str) -> StepHook:
    """The hook for ``spec``.

    Raises:
        DeployError: the spec is not ``STEP:INDEX:MARKER`` with a known step and a positive index.
    """
    step, _, rest = spec.partition(":")
    index, _, marker = rest.partition(":")
    if step not in STEPS or not index.isdecimal() or int(index) < 1 or not marker:
        raise DeployError(f"deploy failpoint {spec!r} must be STEP:INDEX:MARKER with STEP one of {', '.join(STEPS)}")
    seen = 0

    def hook(current: str, path: str) -> None:
        nonlocal seen
        if current != step:
            return
        seen += 1
        if seen == int(index):
            Path(marker).write_text(str(os.getpid()), encoding="utf-8")
            while True:  # until killed: this is where the drill pulls the plug
                time.sleep(3600)

    return hook
