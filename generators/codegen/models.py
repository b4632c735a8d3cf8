"""Small types of the generation loop that tool layers need without importing the loop itself (fast start-up)."""

from __future__ import annotations

from typing import Literal

# accepted: passed every check; edit_error: the reply could not be applied; refused: it writes a file the task does
# not name; no_change: it leaves the code as it was; validation_failed: the change (or its tests) failed validation.
RoundOutcome = Literal["accepted", "edit_error", "refused", "no_change", "validation_failed"]
