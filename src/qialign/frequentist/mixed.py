"""Linear mixed model cross-check (statsmodels MixedLM, REML).

    y_ijt = x_ijt' beta + v_j + w_jt + e_ijt,
    v_j ~ N(0, s2_cluster),  w_jt ~ N(0, s2_cluster_period),  e ~ N(0, s2_residual)

i.e. a random cluster intercept plus a cluster-period variance component nested in cluster
(Hooper et al. 2016 / Girling & Hemming 2016 "nested exchangeable" model); Wald z intervals.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
import statsmodels.api as sm

__all__ = ["MixedResult", "fit_mixedlm"]


@dataclass
class MixedResult:
    params: pd.Series
    bse: pd.Series
    var_cluster: float
    var_cluster_period: float
    var_residual: float
    converged: bool
    note: str = ""


def fit_mixedlm(y, X: pd.DataFrame, cluster, period, *, cluster_period: bool = True) -> MixedResult:
    """Fit the REML random-intercept (+ nested cluster-period) model; never raises on failure."""
    names = list(X.columns)
    safe = [f"x{k}" for k in range(len(names))]
    df = pd.DataFrame(np.asarray(X, dtype=float), columns=safe)
    df["y"] = np.asarray(y, dtype=float)
    df["cluster"] = np.asarray(cluster).astype(str)
    df["cp"] = np.asarray(period).astype(str)
    nan = MixedResult(
        params=pd.Series(np.nan, index=names),
        bse=pd.Series(np.nan, index=names),
        var_cluster=np.nan,
        var_cluster_period=np.nan,
        var_residual=np.nan,
        converged=False,
    )
    if np.linalg.matrix_rank(df[safe].to_numpy()) < len(safe):
        nan.note = "design matrix is rank deficient"
        return nan
    vc = {"cluster_period": "0 + C(cp)"} if cluster_period else None
    formula = "y ~ 0 + " + " + ".join(safe)
    notes = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model = sm.MixedLM.from_formula(formula, df, groups="cluster", re_formula="1", vc_formula=vc)
            res = model.fit(reml=True, method=["lbfgs", "powell"])
        for w in caught:
            msg = str(w.message).split("\n")[0]
            if "converge" in msg.lower() or "singular" in msg.lower() or "boundary" in msg.lower():
                notes.append(msg)
    except (np.linalg.LinAlgError, ValueError, FloatingPointError) as exc:
        nan.note = f"MixedLM failed: {exc}"
        return nan
    params = pd.Series(np.asarray(res.fe_params), index=names)
    bse = pd.Series(np.asarray(res.bse_fe), index=names)
    converged = bool(getattr(res, "converged", True))
    if not converged:
        notes.append("MixedLM did not converge")
    if not np.all(np.isfinite(bse)):
        notes.append("singular covariance of fixed effects")
    return MixedResult(
        params=params,
        bse=bse,
        var_cluster=float(np.asarray(res.cov_re)[0, 0]),
        var_cluster_period=float(res.vcomp[0]) if cluster_period else 0.0,
        var_residual=float(res.scale),
        converged=converged,
        note="; ".join(dict.fromkeys(notes)),
    )
