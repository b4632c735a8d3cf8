"""Tests of the order totals."""

import pytest
from components.order_totals import order_total_cents, price_cents


def test_price_cents() -> None:
    """Whole prices, one and two decimals; blanks around are ignored."""
    assert price_cents("12.50") == 1250
    assert price_cents(" 7 ") == 700
    assert price_cents("0.5") == 50


def test_not_a_price() -> None:
    """Letters or three decimals are not a price."""
    with pytest.raises(ValueError):
        price_cents("abc")
    with pytest.raises(ValueError):
        price_cents("1.005")


def test_order_total() -> None:
    """Price times quantity, summed."""
    assert order_total_cents([("12.50", 2), ("7", 1)]) == 3200
    assert order_total_cents([]) == 0
