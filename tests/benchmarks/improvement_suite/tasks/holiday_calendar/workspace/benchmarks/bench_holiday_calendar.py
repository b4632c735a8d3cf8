"""Benchmark of add_business_days: prints milliseconds for 800 business days from 2024 (lower is better)."""

import sys
import time
from datetime import date

from components.holiday_calendar import add_business_days

started = time.perf_counter()
add_business_days(date(2024, 1, 1), 800)
sys.stdout.write(f"{(time.perf_counter() - started) * 1000:.3f}\n")
