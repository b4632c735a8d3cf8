"""Small types of the generation loop that tool layers need without importing the loop itself (fast start-up)."""

from __future__ import annotations

from typing import Literal

RoundOutcome = Literal["accepted", "edit_error", "validation_failed"]
