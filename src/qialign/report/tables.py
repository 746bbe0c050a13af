"""Number formatting and HTML-ready tables for the report, with small-count suppression.

Every count of people the report shows (patients, survey respondents: rows of the tables in
:data:`qialign.report.context.PEOPLE_TABLES`) goes through :func:`count` with
``report.suppress_below`` (default 5), so a count from 1 to 4 prints as ``<5`` (disclosure
control); zero discloses nothing about individuals and is shown as 0. Counts of clusters, periods
or cells, and a population series, are not people and are printed whole (``below=0``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

DASH = "–"  # en dash for missing values
MINUS = "−"  # typographic minus


@dataclass
class Table:
    """A table ready for the template: header cells, body rows (strings), optional classes."""

    columns: list[str]
    rows: list[list[str]]
    caption: str = ""
    numeric: set[int] = field(default_factory=set)  # column indices to right-align
    row_classes: list[str] = field(default_factory=list)
    note: str = ""

    def row_class(self, i: int) -> str:
        return self.row_classes[i] if i < len(self.row_classes) else ""


def is_missing(x) -> bool:
    if x is None:
        return True
    try:
        return bool(isinstance(x, float | np.floating) and math.isnan(x))
    except TypeError:
        return False


def count(n, below: int = 5) -> str:
    """A count for display: ``<below`` when 0 < n < below, else the integer with thousands separators.

    Zero is not suppressed (an empty cell discloses nothing about individuals).
    """
    if is_missing(n):
        return DASH
    n = int(round(float(n)))
    if 0 < n < below:
        return f"<{below}"
    return f"{n:,}"


def _decimals(values) -> int:
    """Decimals so that the largest magnitude shows 3 significant figures (at least 2 below 10)."""
    finite = [abs(float(v)) for v in values if not is_missing(v) and math.isfinite(float(v))]
    big = max(finite, default=0.0)
    if big == 0:
        return 2
    mag = math.floor(math.log10(big))
    if mag >= 2:
        return 0
    if mag == 1:
        return 1
    if mag == 0 or mag == -1:
        return 2
    return -mag + 1


def num(x, decimals: int | None = None) -> str:
    """One number (typographic minus); decimals chosen from its magnitude unless given."""
    if is_missing(x):
        return DASH
    x = float(x)
    if not math.isfinite(x):
        return "∞" if x > 0 else f"{MINUS}∞"
    d = _decimals([x]) if decimals is None else decimals
    s = f"{x:,.{d}f}"
    if s.lstrip("-").strip("0.,") == "":
        s = s.lstrip("-")  # no "-0.00"
    return s.replace("-", MINUS)


def triple(est, lower, upper) -> tuple[str, str, str]:
    """Estimate and interval bounds formatted with common decimals."""
    d = _decimals([est, lower, upper])
    return num(est, d), num(lower, d), num(upper, d)


def interval_label(interval: str | None, bayesian: bool = True) -> str:
    """``eti80`` -> ``80% CrI``; ``hdi90`` -> ``90% HDI``; ``ci90`` -> ``90% CI`` (frequentist);
    without a code (``results.interval_label``) no level is claimed: ``CrI`` / ``CI``."""
    s = str(interval or "") if isinstance(interval, str) else ""
    kind, prob = (s[:2], s[2:]) if s.startswith("ci") else (s[:3], s[3:])
    if not prob:
        return "CrI" if bayesian else "CI"
    return f"{prob}% " + {"ci": "CI", "hdi": "HDI"}.get(kind, "CrI")


def with_interval(est, lower, upper, label: str) -> str:
    """``0.97 (90% CrI 0.80 to 1.17)`` (``label`` from :func:`interval_label`); the estimate
    alone when the interval is missing."""
    e, lo, hi = triple(est, lower, upper)
    if is_missing(lower) or is_missing(upper):
        return e
    return f"{e} ({label} {lo} to {hi})"


def percent(p, decimals: int = 0) -> str:
    """A probability as a percentage; extreme values shown as <1% / >99%."""
    if is_missing(p):
        return DASH
    v = 100 * float(p)
    if decimals == 0 and 0 < v < 0.5:
        return "<1%"
    if decimals == 0 and 99.5 <= v < 100:
        return ">99%"
    return f"{v:.{decimals}f}%"
