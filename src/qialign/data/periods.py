"""Bin dates into integer periods: period = 1 + whole units (week, month, quarter) since the origin."""

from __future__ import annotations

import numpy as np
import pandas as pd

UNITS = ("week", "month", "quarter")


def parse_dates(values: pd.Series) -> pd.Series:
    """Parse ISO-like dates (strings or datetimes); unparseable values become NaT."""
    if pd.api.types.is_datetime64_any_dtype(values):
        return values.dt.tz_localize(None) if values.dt.tz is not None else values
    return pd.to_datetime(values, errors="coerce", format="mixed", dayfirst=False)


def whole_units(dates: pd.Series, origin: pd.Timestamp, unit: str) -> pd.Series:
    """Whole weeks/months/quarters from ``origin`` to each date (negative before the origin)."""
    if unit not in UNITS:
        raise ValueError(f"unit must be one of {UNITS}, got {unit!r}")
    dates = pd.Series(dates)
    days = (dates.dt.normalize() - origin.normalize()).dt.days
    if unit == "week":
        out = np.floor_divide(days, 7)
    else:
        months = (dates.dt.year - origin.year) * 12 + (dates.dt.month - origin.month)
        # a month is whole only once the day-of-month reaches the origin's day
        months = months - (dates.dt.day < origin.day).astype("Int64")
        out = months if unit == "month" else np.floor_divide(months, 3)
    return pd.Series(out, index=dates.index).astype("Int64")


def bin_dates(dates: pd.Series, unit: str = "month", origin: str | pd.Timestamp | None = None) -> pd.Series:
    """Period numbers (nullable Int64) for ``dates``: 1 + whole units since ``origin``.

    ``origin`` defaults to the earliest date. Dates before the origin give periods <= 0; missing or
    unparseable dates give <NA>.
    """
    parsed = parse_dates(pd.Series(dates))
    if origin is None:
        origin = parsed.min()
    origin = pd.Timestamp(origin)
    return whole_units(parsed, origin, unit) + 1
