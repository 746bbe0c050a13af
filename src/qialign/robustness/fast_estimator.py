"""A fast fixed-effects estimator of the treatment effect on cluster-period summaries, for
permutation inference and placebo checks (thousands of re-estimates in a second).

Each cluster-period becomes one summary on the link scale: the empirical logit
log((e + 1/2) / (n - e + 1/2)) for binary outcomes, the log rate log((count + 1/2) / exposure)
for counts, the mean of y (log y for lognormal) for continuous ones, with inverse-variance
weights w that do not depend on the treatment. The effect is the weighted least-squares
coefficient of the treatment indicator X next to cluster and period fixed effects D. By
Frisch-Waugh-Lovell, with the weighted annihilator M = W - W D (D' W D)^+ D' W,

    theta_hat(y, X) = X' M y / X' M X,

so one M serves every re-assignment of X, and theta_hat is linear in y.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from qialign.families import FAMILIES

#: X' M X below this (per treated summary) means the fixed effects absorb the treatment
ABSORBED = 1e-9


def cluster_period_summaries(cells: pd.DataFrame, family: str) -> pd.DataFrame:
    """One row per (cluster, period): ``treated``, link-scale summary ``y`` and weight ``w``."""
    kind = FAMILIES[family].kind
    stats = [c for c in ("n", *FAMILIES[family].cell_columns) if c in cells.columns]
    cp = cells.groupby(["cluster", "period"], sort=True).agg(
        {**dict.fromkeys(stats, "sum"), "treated": "max"}
    )
    if kind == "binary":
        e, n = cp["events"].to_numpy(float), cp["n"].to_numpy(float)
        y = np.log((e + 0.5) / (n - e + 0.5))
        w = 1.0 / (1.0 / (e + 0.5) + 1.0 / (n - e + 0.5))
    elif kind == "count":
        c = cp["count"].to_numpy(float)
        y, w = np.log((c + 0.5) / cp["exposure"].to_numpy(float)), c + 0.5
    else:
        n = cp["n"].to_numpy(float)
        y, w = cp["sum"].to_numpy(float) / n, n
    return cp[["treated"]].assign(y=y, w=w).reset_index()


def start_periods(cp: pd.DataFrame) -> pd.Series:
    """Each cluster's first treated period (inf for a cluster that never starts)."""
    first = cp[cp["treated"] == 1].groupby("cluster")["period"].min()
    return first.reindex(sorted(cp["cluster"].unique())).astype(float).fillna(np.inf)


@dataclass
class FixedEffects:
    """Cluster + period fixed-effects WLS of summaries ``y`` (weights ``w``) on a treatment."""

    cluster: np.ndarray  # cluster id per summary
    period: np.ndarray  # period per summary
    y: np.ndarray
    M: np.ndarray  # the weighted annihilator of the fixed effects

    @classmethod
    def of(cls, cp: pd.DataFrame) -> FixedEffects:
        cl, pe = cp["cluster"].to_numpy(), cp["period"].to_numpy()
        D = np.column_stack(
            [(cl == c).astype(float) for c in np.unique(cl)]
            + [(pe == t).astype(float) for t in np.unique(pe)[1:]]
        )
        w = cp["w"].to_numpy(float)
        WD = D * w[:, None]
        M = np.diag(w) - WD @ np.linalg.pinv(D.T @ WD) @ WD.T
        return cls(cl, pe, cp["y"].to_numpy(float), M)

    def treatment(self, starts: np.ndarray, clusters: np.ndarray) -> np.ndarray:
        """X per summary for each row of ``starts`` (start period per cluster, in ``clusters``
        order; inf = never): shape (assignments, summaries)."""
        index = np.searchsorted(clusters, self.cluster)
        return (self.period[None, :] >= np.atleast_2d(starts)[:, index]).astype(float)

    def estimate(self, X: np.ndarray, y: np.ndarray | None = None) -> np.ndarray:
        """theta_hat(y, X) for each row of X (NaN where the fixed effects absorb X)."""
        X = np.atleast_2d(X)
        MX = X @ self.M
        xmx = np.einsum("bi,bi->b", MX, X)
        scale = np.maximum(X.sum(axis=1), 1.0)
        return MX @ (self.y if y is None else y) / np.where(xmx > ABSORBED * scale, xmx, np.nan)
