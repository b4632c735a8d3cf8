"""Hidden check of holiday_calendar: the right holidays and business days, and the year's holidays are not computed
again for every day (lines of the module run for 300 business days are bounded)."""

from __future__ import annotations

import sys
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import checklib

module = checklib.component("holiday_calendar")
expected_2025 = {
    date(2025, 1, 1),
    date(2025, 4, 18),
    date(2025, 4, 21),
    date(2025, 5, 5),
    date(2025, 5, 26),
    date(2025, 12, 25),
    date(2025, 12, 26),
}
checklib.expect_equal(checklib.attempt("holidays(2025)", lambda: set(module.holidays(2025))), expected_2025,
                      "holidays(2025)")  # fmt: skip
checklib.expect_equal(module.add_business_days(date(2025, 4, 17), 1), date(2025, 4, 22), "the day after Easter")
checklib.expect_equal(module.add_business_days(date(2025, 12, 24), 2), date(2025, 12, 30), "over Christmas")
checklib.expect_equal(module.add_business_days(date(2024, 12, 31), 1), date(2025, 1, 2), "over New Year")
checklib.expect(not module.is_business_day(date(2026, 4, 3)), "Good Friday 2026 is a holiday")
checklib.expect(module.is_business_day(date(2026, 4, 7)), "Tuesday after Easter 2026 is a business day")

lines = checklib.lines_run(module, lambda: module.add_business_days(date(2030, 1, 1), 300))
checklib.expect(
    lines <= 30_000,
    f"300 business days ran {lines} lines of the module (at most 30,000): the holidays are recomputed per day",
)
checklib.finish()
