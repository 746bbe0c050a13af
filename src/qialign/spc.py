"""Statistical process control arithmetic: Anhøj run-chart rules and Shewhart p / u / XmR limits.

Run charts (Anhøj & Olesen 2014, PLoS ONE 9:e113825; the rules qicharts2 applies): with n useful
points (not on the centre line) a shift is signalled by a run on one side of the centre longer
than round(log2 n) + 3, or by fewer crossings of the centre than the 5th percentile of
Binomial(n - 1, 1/2).

Shewhart limits, centre and sigma from the baseline (pre-intervention) points only:

- p chart (proportions): p̄ = Σ events / Σ n, limits p̄ ± 3 √(p̄ (1 - p̄) / n_i), clipped to [0, 1];
- u chart (counts per unit): ū = Σ counts / Σ n, limits ū ± 3 √(ū / n_i), clipped at 0;
- XmR chart (individual values): x̄ ± 2.66 MR̄, where MR̄ is the mean moving range and
  2.66 = 3 / d2 with d2 = 1.128 (Montgomery, Introduction to Statistical Quality Control, ch. 6).

The chart for an outcome follows its family's kind, as SPC practice chooses: binary -> p, count -> u,
continuous -> XmR. No report or file access here: plain arrays in, numbers out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

from qialign.families import FAMILIES

#: the Shewhart chart for each family kind (qialign.families.Family.kind)
CHART_BY_KIND = {"binary": "p", "count": "u", "continuous": "xmr"}
CHART_NAMES = {"p": "p chart", "u": "u chart", "xmr": "XmR (individuals) chart", "run": "run chart"}
#: the fewest baseline points each chart's limits need (a moving range needs two)
MIN_BASELINE = {"p": 1, "u": 1, "xmr": 2}
#: 3 / d2 for moving ranges of two points (d2 = 1.128)
XMR_FACTOR = 2.66
#: Shewhart limits at 3 sigma
SIGMAS = 3.0


def chart_for(family: str) -> str:
    """``p``, ``u`` or ``xmr`` for a family name of qialign.families."""
    return CHART_BY_KIND[FAMILIES[family].kind]


@dataclass(frozen=True)
class RunsAnalysis:
    """Anhøj's two run-chart tests on one series against a centre line."""

    useful: int  # points not on the centre
    longest_run: int
    longest_run_max: int  # a longer run is a signal
    crossings: int
    crossings_min: int  # fewer crossings are a signal

    @property
    def long_run(self) -> bool:
        return self.longest_run > self.longest_run_max

    @property
    def few_crossings(self) -> bool:
        return self.crossings < self.crossings_min

    @property
    def signal(self) -> bool:
        return self.long_run or self.few_crossings


def runs_limits(useful: int) -> tuple[int, int]:
    """(upper limit of the longest run, lower limit of the number of crossings) for ``useful``
    points: round(log2 n) + 3 and the 5th percentile of Binomial(n - 1, 0.5)."""
    if useful < 1:
        return 0, 0
    # log2 n + 3 is never a half-integer for integer n, so rounding ties do not arise
    longest = int(math.floor(math.log2(useful) + 3 + 0.5))
    crossings = int(stats.binom.ppf(0.05, useful - 1, 0.5)) if useful > 1 else 0
    return longest, crossings


def runs_analysis(values, centre) -> RunsAnalysis:
    """Runs and crossings of ``values`` around ``centre`` (a number or one per point); missing
    values and points on the centre are skipped, as in qicharts2."""
    x = np.asarray(values, dtype=float) - np.broadcast_to(np.asarray(centre, dtype=float), np.shape(values))
    side = np.sign(x[np.isfinite(x)])
    side = side[side != 0]
    if side.size == 0:
        return RunsAnalysis(0, 0, 0, 0, 0)
    change = np.flatnonzero(np.diff(side) != 0)
    bounds = np.concatenate([[-1], change, [side.size - 1]])
    longest = int(np.diff(bounds).max())
    lim_run, lim_cross = runs_limits(side.size)
    return RunsAnalysis(side.size, longest, lim_run, int(change.size), lim_cross)


@dataclass(frozen=True)
class Limits:
    """Centre line and per-point control limits of a Shewhart chart."""

    chart: str
    centre: float
    lower: np.ndarray
    upper: np.ndarray
    sigma: np.ndarray  # one sigma per point (the spread a limit is SIGMAS times)

    def outside(self, values) -> np.ndarray:
        """Points beyond the limits (special-cause signals)."""
        v = np.asarray(values, dtype=float)
        return (v > self.upper) | (v < self.lower)


def _attribute(chart: str, totals, n, baseline) -> Limits:
    totals, n = np.asarray(totals, dtype=float), np.asarray(n, dtype=float)
    centre = totals[baseline].sum() / n[baseline].sum()
    with np.errstate(divide="ignore", invalid="ignore"):
        var = centre * (1 - centre) / n if chart == "p" else centre / n
    sigma = np.sqrt(var)
    lower = np.maximum(centre - SIGMAS * sigma, 0.0)
    upper = centre + SIGMAS * sigma
    if chart == "p":
        upper = np.minimum(upper, 1.0)
    return Limits(chart, float(centre), lower, upper, sigma)


def p_limits(events, n, baseline=None) -> Limits:
    """p chart of ``events`` out of ``n`` per point, limits from the ``baseline`` points (all if None)."""
    return _attribute("p", events, n, _mask(baseline, len(n)))


def u_limits(counts, n, baseline=None) -> Limits:
    """u chart of ``counts`` over ``n`` units of opportunity per point, limits from ``baseline``."""
    return _attribute("u", counts, n, _mask(baseline, len(n)))


def xmr_limits(values, baseline=None) -> Limits:
    """Individuals chart: x̄ ± 2.66 MR̄ over the ``baseline`` points (moving ranges between
    consecutive baseline points)."""
    v = np.asarray(values, dtype=float)
    base = v[_mask(baseline, len(v))]
    if base.size < 2:
        raise ValueError("an XmR chart needs at least two baseline points")
    centre, mr = float(base.mean()), float(np.abs(np.diff(base)).mean())
    sigma = np.full(v.shape, mr * XMR_FACTOR / SIGMAS)
    lower, upper = np.full(v.shape, centre - XMR_FACTOR * mr), np.full(v.shape, centre + XMR_FACTOR * mr)
    return Limits("xmr", centre, lower, upper, sigma)  # per point, as the attribute charts


def limits(chart: str, values, n, baseline) -> Limits:
    """The chart's limits for per-point ``values`` (proportions, rates per unit or values)."""
    if chart == "xmr":
        return xmr_limits(values, baseline)
    totals = np.asarray(values, dtype=float) * np.asarray(n, dtype=float)
    return _attribute(chart, totals, n, _mask(baseline, len(n)))


def _mask(baseline, size: int) -> np.ndarray:
    return np.ones(size, bool) if baseline is None else np.asarray(baseline, bool)


def point_sigma(chart: str, centre, n, limits: Limits) -> np.ndarray:
    """One sigma of a point at ``centre`` (per point): √(c (1 - c) / n) for p, √(c / n) for u, the
    baseline's MR̄ / d2 for XmR (``limits``)."""
    c, n = np.asarray(centre, dtype=float), np.asarray(n, dtype=float)
    if chart == "xmr":
        return np.broadcast_to(limits.sigma, c.shape)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.sqrt(np.clip(c * (1 - c), 0, None) / n if chart == "p" else np.clip(c, 0, None) / n)
