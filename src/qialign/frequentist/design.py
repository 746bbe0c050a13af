"""From the prepared analysis table to (y, X, cluster, period, offset, weights) arrays.

Mean model (link g, Hussey & Hughes 2007 when ``trend="period"``):

    g(E y) = f(period) + theta * treated + Z covariates
             [+ a * m + gamma * treated * m   for each moderator m, e.g. alignment_z]

``trend="period"``: one dummy per period and no intercept (geeCRT's coding); ``"linear"``:
intercept + period. Outcomes: gaussian ``y``; lognormal ``log(y)`` analysed as gaussian;
bernoulli/binomial 0/1 ``y``; poisson/negative_binomial count ``y`` with ``log(exposure)``
offset when an ``exposure`` column exists. Aggregate cells (``level="cell"``): binomial
``events``/``n`` cells are expanded to n Bernoulli rows (exactly the row-level likelihood and
estimating equations when covariates are cluster-period level); counts use ``count`` (+
``exposure``) one row per cell; gaussian uses ``mean`` and lognormal ``log_mean`` (the cell mean
of log y) as rows with prior weight ``n``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = ["Design", "build_design", "normalise_family", "FAMILIES", "TRENDS", "LEVELS"]

#: family -> (GEE/GLM working family, link-scale name, natural-scale name)
FAMILIES = {
    "gaussian": ("gaussian", "mean_difference", "mean_difference"),
    "lognormal": ("gaussian", "log_mean", "ratio_of_geometric_means"),
    "bernoulli": ("binomial", "log_odds", "odds_ratio"),
    "binomial": ("binomial", "log_odds", "odds_ratio"),
    "poisson": ("poisson", "log_rate", "rate_ratio"),
    "negative_binomial": ("poisson", "log_rate", "rate_ratio"),
}
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
    weights: np.ndarray | None
    level: str
    n_dropped: int = 0

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
    working = FAMILIES[family][0]
    _need(data, ["cluster", "period", "treated", *covariates, *moderators])
    if level == "row":
        ycol = {"gaussian": "y", "binomial": "y", "poisson": "y"}[working]
    else:
        ycol = {
            "gaussian": "log_mean" if family == "lognormal" else "mean",
            "binomial": "events",
            "poisson": "count",
        }[working]
    extra = [ycol]
    if level == "cell" and working != "poisson":
        extra.append("n")
    if working == "poisson" and "exposure" in data.columns:
        extra.append("exposure")
    _need(data, extra)
    used = ["cluster", "period", "treated", *covariates, *moderators, *extra]
    d = data[used].dropna()
    n_dropped = len(data) - len(d)
    if working == "binomial" and level == "cell":
        d = _expand_binomial(d)
        ycol = "y"
    d = d.reset_index(drop=True)
    y = d[ycol].to_numpy(dtype=float)
    if family == "lognormal" and level == "row":
        if np.any(y <= 0):
            raise ValueError("lognormal outcome needs y > 0")
        y = np.log(y)
    if working == "binomial" and not np.all(np.isin(y, (0.0, 1.0))):
        raise ValueError(f"{family} outcome must be 0/1 at row level")
    if working == "poisson" and np.any(y < 0):
        raise ValueError("count outcome must be >= 0")

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
        cols[m] = d[m].to_numpy(dtype=float)
        cols[f"treated:{m}"] = treated * cols[m]
    X = pd.DataFrame(cols)
    offset = None
    if "exposure" in extra:
        expo = d["exposure"].to_numpy(dtype=float)
        if np.any(expo <= 0):
            raise ValueError("exposure must be > 0")
        offset = np.log(expo)
    weights = d["n"].to_numpy(dtype=float) if (level == "cell" and working == "gaussian") else None
    return Design(
        family=family,
        working_family=working,
        y=y,
        X=X,
        cluster=d["cluster"].astype(str).to_numpy(),
        period=period,
        offset=offset,
        weights=weights,
        level=level,
        n_dropped=n_dropped,
    )


def _expand_binomial(d: pd.DataFrame) -> pd.DataFrame:
    """events/n cells -> one 0/1 row per individual (``y``)."""
    n = d["n"].to_numpy().astype(int)
    ev = d["events"].to_numpy().astype(int)
    if np.any(ev < 0) or np.any(ev > n):
        raise ValueError("binomial cells need 0 <= events <= n")
    rep = d.loc[d.index.repeat(n)].drop(columns=["events", "n"]).reset_index(drop=True)
    within = np.concatenate([np.arange(k) for k in n]) if len(n) else np.array([], dtype=int)
    rep["y"] = (within < np.repeat(ev, n)).astype(float)
    return rep
