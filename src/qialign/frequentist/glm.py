"""GLM with cluster-robust (CR) standard errors (statsmodels fit, sandwich computed here).

Independence working model fitted by ML/quasi-ML; sandwich over clusters g,

    V = c A^{-1} (sum_g s_g s_g') A^{-1},   A = X' diag(w mu'^2 / v) X,
    s_g = sum_{i in g} x_i w_i mu'_i (y_i - mu_i) / v_i,

with Stata's CR1 factor c = G/(G-1) * (N-1)/(N-p), N the number of individuals (``nobs``; rows
by default), and t intervals on G-1 degrees of freedom from the caller. ``weights`` are variance
weights: n for a binomial proportion or gaussian mean of n individuals, so cells and their
individuals give the same estimates, scores and (with N = individuals) the same CR1 SEs. Counts
(poisson, negative_binomial) use a Poisson log-link quasi-likelihood: the mean model is the
negative binomial one and the cluster-robust covariance does not rely on the variance function.
The sandwich is free of the dispersion (A scales as 1/phi, s_g s_g' as 1/phi^2).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
import statsmodels.api as sm

from qialign.families import statsmodels_family

__all__ = ["GLMResult", "fit_glm_cluster_robust"]


@dataclass
class GLMResult:
    params: pd.Series
    bse: pd.Series
    n_clusters: int
    note: str = ""

    @property
    def df(self) -> int:
        return self.n_clusters - 1


def fit_glm_cluster_robust(
    y, X: pd.DataFrame, cluster, *, family: str = "gaussian", offset=None, weights=None, nobs=None
) -> GLMResult:
    """Fit the GLM (``family`` in gaussian/binomial/poisson) with CR1 SEs; never raises on failure."""
    sm_family = statsmodels_family(family)  # ValueError for a family that is not a working family
    names = list(X.columns)
    groups = pd.factorize(np.asarray(cluster))[0]
    n_clusters = int(groups.max()) + 1 if len(groups) else 0
    nan = GLMResult(pd.Series(np.nan, index=names), pd.Series(np.nan, index=names), n_clusters)
    Xa = np.asarray(X, dtype=float)
    ya = np.asarray(y, dtype=float)
    if np.linalg.matrix_rank(Xa) < Xa.shape[1]:
        nan.note = "design matrix is rank deficient"
        return nan
    notes = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model = sm.GLM(ya, Xa, family=sm_family, offset=offset, var_weights=weights)
            res = model.fit()
        for w in caught:
            msg = str(w.message).split("\n")[0]
            if "converge" in msg.lower() or "separation" in msg.lower():
                notes.append(msg)
        bse = _cr1(model, np.asarray(res.params), Xa, ya, groups, weights, nobs)
    except (np.linalg.LinAlgError, ValueError, FloatingPointError) as exc:
        nan.note = f"GLM failed: {exc}"
        return nan
    bse = pd.Series(bse, index=names)
    if not np.all(np.isfinite(bse)):
        notes.append("singular covariance")
    return GLMResult(pd.Series(np.asarray(res.params), index=names), bse, n_clusters, "; ".join(notes))


def _cr1(model, beta, X, y, groups, weights, nobs) -> np.ndarray:
    """CR1 standard errors (module docstring) at ``beta``."""
    eta = model.predict(beta, which="linear")
    fam = model.family
    mu = fam.link.inverse(eta)
    dmu = fam.link.inverse_deriv(eta)
    v = fam.variance(mu)
    w = np.ones_like(y) if weights is None else np.asarray(weights, dtype=float)
    A = X.T @ (X * (w * dmu**2 / v)[:, None])
    s = X * (w * dmu * (y - mu) / v)[:, None]
    G = int(groups.max()) + 1
    S = np.zeros((G, X.shape[1]))
    np.add.at(S, groups, s)
    Ainv = np.linalg.inv(A)
    n, p = (len(y) if nobs is None else float(nobs)), X.shape[1]
    cov = G / (G - 1) * (n - 1) / (n - p) * Ainv @ (S.T @ S) @ Ainv
    return np.sqrt(np.clip(np.diag(cov), 0, None))
