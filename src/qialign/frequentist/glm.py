"""GLM with cluster-robust (CR) standard errors (statsmodels).

Independence working model fitted by ML/quasi-ML, sandwich covariance over clusters with
statsmodels' default small-sample factor G/(G-1) * (N-1)/(N-p) (Stata's CR1); the caller
uses t intervals on G-1 degrees of freedom. Counts (poisson, negative_binomial) use a Poisson
log-link quasi-likelihood: the mean model is the negative binomial one and the cluster-robust
covariance does not rely on the variance function.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
import statsmodels.api as sm

__all__ = ["GLMResult", "fit_glm_cluster_robust"]

_SM_FAMILY = {
    "gaussian": sm.families.Gaussian,
    "binomial": sm.families.Binomial,
    "poisson": sm.families.Poisson,
}


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
    y, X: pd.DataFrame, cluster, *, family: str = "gaussian", offset=None, weights=None
) -> GLMResult:
    """Fit the GLM (``family`` in gaussian/binomial/poisson) with CR1 SEs; never raises on failure."""
    if family not in _SM_FAMILY:
        raise ValueError(f"family must be one of {sorted(_SM_FAMILY)}, got {family!r}")
    names = list(X.columns)
    groups = pd.factorize(np.asarray(cluster))[0]
    n_clusters = int(groups.max()) + 1 if len(groups) else 0
    nan = GLMResult(pd.Series(np.nan, index=names), pd.Series(np.nan, index=names), n_clusters)
    Xa = np.asarray(X, dtype=float)
    if np.linalg.matrix_rank(Xa) < Xa.shape[1]:
        nan.note = "design matrix is rank deficient"
        return nan
    notes = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model = sm.GLM(
                np.asarray(y, dtype=float),
                Xa,
                family=_SM_FAMILY[family](),
                offset=offset,
                var_weights=weights,
            )
            res = model.fit(cov_type="cluster", cov_kwds={"groups": groups}, use_t=False)
        for w in caught:
            msg = str(w.message).split("\n")[0]
            if "converge" in msg.lower() or "separation" in msg.lower():
                notes.append(msg)
    except (np.linalg.LinAlgError, ValueError, FloatingPointError) as exc:
        nan.note = f"GLM failed: {exc}"
        return nan
    bse = pd.Series(np.asarray(res.bse), index=names)
    if not np.all(np.isfinite(bse)):
        notes.append("singular covariance")
    return GLMResult(pd.Series(np.asarray(res.params), index=names), bse, n_clusters, "; ".join(notes))
