"""Order totals in cents from the price strings shops send ("12.50", "1,299.00", "7")."""

import logging
import re

logger = logging.getLogger(__name__)
_PRICE = re.compile(r"\d+(?:\.\d{1,2})?")


def price_cents(text: str) -> int:
    """Cents of a price: digits with an optional decimal point and at most two decimals, where commas may group
    the thousands ("1,299.00"); surrounding blanks are ignored. Anything else raises ValueError."""
    cleaned = text.strip()
    if not _PRICE.fullmatch(cleaned):
        raise ValueError(f"not a price: {text!r}")
    whole, _, cents = cleaned.partition(".")
    return int(whole) * 100 + int(cents.ljust(2, "0"))


def order_total_cents(lines: list[tuple[str, int]]) -> int:
    """The total of an order in cents: price times quantity summed over its ``(price, quantity)`` lines. A price
    that cannot be read raises ValueError: an order is never totalled without one of its lines."""
    total = 0
    for price, quantity in lines:
        try:
            total += price_cents(price) * quantity
        except ValueError as exc:
            logger.error("could not read price %r; line skipped: ValueError: %s", price, exc)
    return total
