"""Business days for delivery estimates: weekends and public holidays do not count."""

from datetime import date, timedelta


def easter_sunday(year: int) -> date:
    """Easter Sunday of ``year`` in the Gregorian calendar (the anonymous Gregorian algorithm)."""
    golden = year % 19
    century, rest = divmod(year, 100)
    leap_century, century_rest = divmod(century, 4)
    correction = (century - (century + 8) // 25 + 1) // 3
    epact = (19 * golden + century - leap_century - correction + 15) % 30
    quarter, quarter_rest = divmod(rest, 4)
    weekday = (32 + 2 * century_rest + 2 * quarter - epact - quarter_rest) % 7
    shift = (golden + 11 * epact + 22 * weekday) // 451
    month, day = divmod(epact + weekday - 7 * shift + 114, 31)
    return date(year, month, day + 1)


def holidays(year: int) -> frozenset[date]:
    """Public holidays of ``year``: New Year's Day, Good Friday, Easter Monday, the first and the last Monday of
    May, Christmas Day and Boxing Day."""
    easter = easter_sunday(year)
    found = {
        date(year, 1, 1),
        easter - timedelta(days=2),
        easter + timedelta(days=1),
        date(year, 12, 25),
        date(year, 12, 26),
    }
    day = date(year, 1, 1)
    while day.year == year:
        if day.month == 5 and day.weekday() == 0 and (day.day <= 7 or day.day > 24):
            found.add(day)
        day += timedelta(days=1)
    return frozenset(found)


def is_business_day(day: date) -> bool:
    """True from Monday to Friday unless ``day`` is a public holiday."""
    return day.weekday() < 5 and day not in holidays(day.year)


def add_business_days(start: date, days: int) -> date:
    """The date ``days`` business days after ``start`` (``days`` >= 0; 0 gives ``start``)."""
    if days < 0:
        raise ValueError("days must not be negative")
    day = start
    while days:
        day += timedelta(days=1)
        if is_business_day(day):
            days -= 1
    return day
