"""Hidden check of order_totals: prices with thousands separators are read, and an unreadable price raises instead
of being logged and skipped (which returned a wrong total)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import checklib

module = checklib.component("order_totals")
for text, cents in (("1,299.00", 129900), ("12,345,678.9", 1234567890), ("7", 700), ("0.05", 5), ("999", 99900)):
    checklib.expect_equal(checklib.attempt(f"price_cents({text!r})", lambda t=text: module.price_cents(t)), cents,
                          f"price_cents({text!r})")  # fmt: skip
lines = [("1,299.00", 2), ("0.50", 3), ("2,450.00", 1)]
checklib.expect_equal(checklib.attempt("order_total_cents", lambda: module.order_total_cents(lines)), 504950,
                      "the total of an order with thousands separators")  # fmt: skip
for bad in ("abc", "12.345", ""):
    try:
        total = module.order_total_cents([("10.00", 1), (bad, 1)])
    except ValueError:
        continue
    checklib.expect(False, f"an order with the price {bad!r} was totalled as {total} instead of raising ValueError")
checklib.finish()
