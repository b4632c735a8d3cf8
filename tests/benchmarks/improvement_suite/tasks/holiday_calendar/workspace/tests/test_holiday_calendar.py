"""Tests of the holiday calendar."""

from datetime import date

import pytest
from components.holiday_calendar import add_business_days, easter_sunday, holidays, is_business_day


def test_easter() -> None:
    """Known Easter Sundays."""
    assert easter_sunday(2024) == date(2024, 3, 31)
    assert easter_sunday(2025) == date(2025, 4, 20)
    assert easter_sunday(2038) == date(2038, 4, 25)


def test_holidays_of_2024() -> None:
    """Every public holiday of 2024, and nothing else."""
    assert holidays(2024) == {
        date(2024, 1, 1),
        date(2024, 3, 29),
        date(2024, 4, 1),
        date(2024, 5, 6),
        date(2024, 5, 27),
        date(2024, 12, 25),
        date(2024, 12, 26),
    }


def test_business_days() -> None:
    """Weekends and holidays are not business days."""
    assert is_business_day(date(2024, 5, 7))
    assert not is_business_day(date(2024, 5, 6))
    assert not is_business_day(date(2024, 5, 11))


def test_add_business_days_skips_weekends_and_holidays() -> None:
    """Counting on from the Thursday before Easter 2024 skips Good Friday, the weekend and Easter Monday."""
    assert add_business_days(date(2024, 3, 28), 0) == date(2024, 3, 28)
    assert add_business_days(date(2024, 3, 28), 1) == date(2024, 4, 2)
    assert add_business_days(date(2024, 12, 20), 3) == date(2024, 12, 27)
    with pytest.raises(ValueError):
        add_business_days(date(2024, 1, 1), -1)
