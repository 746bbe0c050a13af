"""The frequentist exposure-time-indicator (ETI) cross-check of an ``exposure: eti`` model.

Mean model: the cross-check's (:mod:`.design`) with the one ``treated`` column replaced by one
indicator per exposure time e (Kenny et al., Stat Med 2022),

    g(E y) = f(period) + sum_e b_e 1[exposure time = e] + Z covariates [+ moderator terms],

fitted by the GEEs of :mod:`.gee` (every working correlation and sandwich asked for). Rows, named
as the Bayesian estimands (``qialign.results.TATE`` / ``PTE``):

- tate = w' b, w_e = 1 / m on the m exposure times of the window [a, b]; SE sqrt(w' V w) with V the
  sandwich (delta method, exact for a linear combination);
- pte = b_k at exposure time k; SE sqrt(V_kk);

each with t intervals on the GEE's df (:func:`.design.gee_df`) and a ``_natural`` row (exp of
estimate and limits for log / logit links). GLM and MixedLM give no ETI rows: they report SEs,
not the covariance a mean of coefficients needs.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from qialign import methods as registry
from qialign.families import FAMILIES
from qialign.results import PTE, TATE

from .design import build_design, gee_df
from .gee import fit_gee

#: the indicator column of exposure time e in the ETI mean model
INDICATOR = "exposure_time_{}"


def _indicators(data: pd.DataFrame) -> tuple[pd.DataFrame, list[int]]:
    """``data`` with one 0/1 column per exposure time of its treated rows; the exposure times."""
    e = data["exposure_time"].to_numpy(int) * (data["treated"].to_numpy(float) > 0)
    levels = sorted(int(x) for x in np.unique(e[e > 0]))
    return data.assign(**{INDICATOR.format(k): (e == k).astype(float) for k in levels}), levels


def _combination(names: list[str], levels: list[int], window: tuple[int, int]) -> np.ndarray:
    """Weights w over the coefficients: 1 / m on each of the window's m exposure-time indicators."""
    inside = [INDICATOR.format(k) for k in levels if window[0] <= k <= window[1]]
    return np.array([1.0 / len(inside) if n in inside else 0.0 for n in names])


def _rows(method, fam, name, est, se, df, note, interval) -> list[list]:
    """The link-scale row and its natural-scale row (exp of estimate and limits; se NaN)."""
    q = stats.t.ppf(0.5 + interval / 2, df) if df > 0 else np.nan
    lo, hi = est - q * se, est + q * se
    nat = fam.natural([est, lo, hi])
    nat_se = np.nan if fam.exp_natural else se
    return [
        [method, name, fam.link_scale, est, se, lo, hi, df, note],
        [method, f"{name}_natural", fam.natural_scale, *nat[:1], nat_se, *nat[1:], df, note],
    ]


def eti_rows(
    data: pd.DataFrame,
    family: str,
    *,
    window: tuple[int, int],
    pte_at: int,
    trend: str,
    covariates,
    moderators,
    level: str,
    interval: float,
    methods,
    tol: float,
) -> list[list]:
    """Cross-check rows (``crosscheck.COLUMNS`` order) of tate over ``window`` and pte at
    ``pte_at``; ``data`` needs ``exposure_time``. ValueError when the window or point is not
    among the data's exposure times."""
    if "exposure_time" not in data.columns:
        raise ValueError("the ETI cross-check needs an exposure_time column")
    data, levels = _indicators(data)
    wanted = range(window[0], window[1] + 1)
    if any(e not in levels for e in wanted) or pte_at not in levels:
        raise ValueError(f"window {list(window)} / pte_at {pte_at} not among exposure times {levels}")
    cols = [INDICATOR.format(k) for k in levels]
    des = build_design(
        data, family, trend=trend, covariates=[*covariates, *cols], moderators=moderators, level=level
    )
    X = des.X.drop(columns="treated")  # the indicators sum to it
    names = list(X.columns)
    w = _combination(names, levels, window)
    e_k = (np.array(names) == INDICATOR.format(pte_at)).astype(float)  # b_k = e_k' b
    fam, n_clusters = FAMILIES[family], des.n_clusters
    note = f"exposure-time indicators; tate over exposure times {window[0]}-{window[1]}"
    rows: list[list] = []
    for corstr in registry.CORSTRS:
        kinds = [k for k in registry.SE_KINDS if registry.gee_method(corstr, k) in methods]
        if not kinds:
            continue
        g = fit_gee(
            des.y, X, des.cluster, family=des.working_family, corstr=corstr, period=des.period,
            offset=des.offset, mult=des.mult, ss=des.ss, tol=tol,
        )  # fmt: skip
        df, why = gee_df(g.df, n_clusters)
        b = g.params.to_numpy(float)
        for k in kinds:
            V = g.cov[k].to_numpy(float)
            text = "; ".join(x for x in (note, g.note, why) if x)
            method = registry.gee_method(corstr, k)
            for name, c in ((TATE, w), (PTE, e_k)):
                rows += _rows(method, fam, name, float(c @ b), float(np.sqrt(c @ V @ c)), df, text, interval)
    return rows
