"""From the prepared analysis table to (y, X, cluster, period, offset, mult, ss) arrays.

Mean model (link g, Hussey & Hughes 2007 when ``trend="period"``):

    g(E y) = f(period) + theta * treated + Z covariates
             [+ a * m + gamma * treated * m   for each moderator m, e.g. alignment_z]

A moderator that is 0 wherever ``treated`` is 0 (fidelity: nothing delivered in control cells)
is its own interaction; it enters once, as ``treated:<m>``. ``trend="period"``: one dummy per
period and no intercept (geeCRT's coding); ``"linear"``: intercept + period.

Observations are individuals (``level="row"``, the ``patients`` table) or cluster-period cells
(``level="cell"``, ``cluster_periods``); the outcome column is ``y`` (the prepared tables) or its
cell alias in brackets. Per family:

- bernoulli/binomial: y events of n trials (``n`` defaults to 1: 0/1 rows; cells [``events``]),
  analysed as the proportion y / n of ``mult = n`` individuals;
- poisson/negative_binomial: the count y (cells [``count``]) with ``log(exposure)`` offset when an
  ``exposure`` column exists; a cell is one observation (its overdispersion is the cell's);
- gaussian y (cells [``mean``]), lognormal log y (cells [``log_mean``], already on the log scale):
  rows are individuals; a cell is the mean of ``mult = n`` individuals with within-cell sum of
  squares ``ss = (n - 1) sd^2`` from the ``sd`` column (sample SD).

``nobs`` is the number of individuals (sum of ``mult``; for count cells sum of ``n`` when given).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from qialign.families import FAMILIES

__all__ = ["Design", "build_design", "gee_df", "normalise_family", "TRENDS", "LEVELS"]

TRENDS = ("period", "linear")
LEVELS = ("row", "cell")


@dataclass
class Design:
    """Arrays for one analysis; ``X`` keeps column names (``treated``, ``treated:<m>``...)."""

    family: str
    working_family: str
    y: np.ndarray
    X: pd.DataFrame
    cluster: np.ndarray
    period: np.ndarray
    offset: np.ndarray | None
    weights: np.ndarray | None  # GLM variance weights (= mult): individuals behind each observation
    level: str
    n_dropped: int = 0
    mult: np.ndarray | None = None
    ss: np.ndarray | None = None
    nobs: float = 0.0

    @property
    def n_clusters(self) -> int:
        return len(np.unique(self.cluster))


def normalise_family(family: str) -> str:
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {sorted(FAMILIES)}, got {family!r}")
    return family


def _need(data: pd.DataFrame, cols) -> None:
    missing = [c for c in cols if c not in data.columns]
    if missing:
        raise ValueError(f"data lacks column(s) {missing}")


def _outcome_columns(data, family, working, level) -> tuple[str, list[str]]:
    """The outcome column and the other columns it needs (n, sd, exposure)."""
    ycol = "y"
    if level == "cell" and "y" not in data.columns:
        ycol = FAMILIES[family].cell_outcome
    extra = [ycol]
    if working == "binomial" and (level == "cell" or "n" in data.columns):
        extra.append("n")
    if working == "gaussian" and level == "cell":
        extra += ["n", "sd"]
    if working == "poisson":
        extra += [c for c in ("exposure", "n") if c in data.columns]
    _need(data, extra)
    return ycol, extra


def build_design(
    data: pd.DataFrame,
    family: str,
    *,
    trend: str = "period",
    covariates=(),
    moderators=(),
    level: str = "row",
) -> Design:
    """Validate arguments and build the design; raises ValueError for wrong arguments/columns."""
    normalise_family(family)
    if trend not in TRENDS:
        raise ValueError(f"trend must be one of {TRENDS}, got {trend!r}")
    if level not in LEVELS:
        raise ValueError(f"level must be one of {LEVELS}, got {level!r}")
    covariates, moderators = list(covariates), list(moderators)
    working = FAMILIES[family].glm_family
    _need(data, ["cluster", "period", "treated", *covariates, *moderators])
    ycol, extra = _outcome_columns(data, family, working, level)
    used = list(dict.fromkeys(["cluster", "period", "treated", *covariates, *moderators, *extra]))
    d = data[used].dropna()
    if working != "poisson" and "n" in d.columns:
        d = d[d["n"] > 0]  # a cell without individuals carries no information
    n_dropped = len(data) - len(d)
    d = d.reset_index(drop=True)
    y, mult, ss = _outcome(d, ycol, family, working, level)
    X = _mean_model(d, trend, covariates, moderators)
    offset = None
    if "exposure" in d.columns:
        expo = d["exposure"].to_numpy(dtype=float)
        if np.any(expo <= 0):
            raise ValueError("exposure must be > 0")
        offset = np.log(expo)
    if mult is not None:
        nobs = float(mult.sum())
    elif level == "cell" and "n" in d.columns:
        nobs = float(d["n"].sum())
    else:
        nobs = float(len(d))
    return Design(
        family=family,
        working_family=working,
        y=y,
        X=X,
        cluster=d["cluster"].astype(str).to_numpy(),
        period=d["period"].to_numpy(),
        offset=offset,
        weights=mult,
        level=level,
        n_dropped=n_dropped,
        mult=mult,
        ss=ss,
        nobs=nobs,
    )


def _outcome(d, ycol, family, working, level):
    """y (proportion, count, value or cell mean), mult and ss; see the module docstring."""
    y = d[ycol].to_numpy(dtype=float)
    if working == "binomial":
        if "n" not in d.columns:
            if not np.all(np.isin(y, (0.0, 1.0))):
                raise ValueError(f"{family} outcome must be 0/1 at row level (or give events and n)")
            return y, None, None
        n = d["n"].to_numpy(dtype=float)
        if np.any(y < 0) or np.any(y > n) or np.any(y != np.round(y)):
            raise ValueError(f"{family} outcome needs whole events with 0 <= events <= n")
        return y / n, n, None
    if working == "poisson":
        if np.any(y < 0):
            raise ValueError("count outcome must be >= 0")
        return y, None, None
    if level == "row":
        if family == "lognormal":
            if np.any(y <= 0):
                raise ValueError("lognormal outcome needs y > 0")
            y = np.log(y)
        return y, None, None
    n = d["n"].to_numpy(dtype=float)
    sd = d["sd"].to_numpy(dtype=float)
    if np.any(sd < 0):
        raise ValueError("cell SDs must be >= 0")
    return y, n, (n - 1) * sd**2


def _mean_model(d, trend, covariates, moderators) -> pd.DataFrame:
    """Trend, treatment, covariate and moderator columns (see the module docstring)."""
    period = d["period"].to_numpy()
    cols: dict[str, np.ndarray] = {}
    if trend == "period":
        for t in np.sort(np.unique(period)):
            cols[f"period_{t}"] = (period == t).astype(float)
    else:
        cols["intercept"] = np.ones(len(d))
        cols["period"] = period.astype(float)
    treated = d["treated"].to_numpy(dtype=float)
    cols["treated"] = treated
    for c in covariates:
        s = d[c]
        if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
            cols[c] = s.to_numpy(dtype=float)
        else:
            dummies = pd.get_dummies(s.astype(str), prefix=c, drop_first=True, dtype=float)
            for k in dummies.columns:
                cols[k] = dummies[k].to_numpy()
    for m in moderators:
        v = d[m].to_numpy(dtype=float)
        if np.any(v[treated == 0] != 0):  # a main effect unless it is 0 off treatment
            cols[m] = v
        cols[f"treated:{m}"] = treated * v
    return pd.DataFrame(cols)


def gee_df(clusters_minus_p: int, clusters: int) -> tuple[int, str]:
    """t degrees of freedom for the corrected sandwiches and MixedLM: clusters - p (Li, Turner &
    Preisser 2018).

    With few clusters and categorical periods p can reach the number of clusters (7 wards, 16 period
    effects); then clusters - 2 is used instead (intercept and treatment at cluster level) and noted.
    """
    if clusters_minus_p >= 1:
        return clusters_minus_p, ""
    return clusters - 2, f"clusters - p = {clusters_minus_p} < 1: t on clusters - 2 = {clusters - 2} df"
