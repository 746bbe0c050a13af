"""A tiny numpy simulator of QI trials for the model tests (rows and cluster-period cells).

eta_ijt = mu + trend_t + b_age + X_jt (theta + gamma A_j) + u_site + v_j + w_jt, with A_j the
alignment standardised over clusters (mean 0, SD 1, ddof = 1) exactly as the model does.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.special import expit

# link-scale truths per family: (mu, theta, gamma, sigma or phi)
TRUTH = {
    "bernoulli": dict(mu=-0.5, theta=-0.4, gamma=0.3),
    "binomial": dict(mu=-0.5, theta=-0.4, gamma=0.3),
    "gaussian": dict(mu=10.0, theta=-1.5, gamma=1.0, sigma=4.0),
    "lognormal": dict(mu=1.5, theta=-0.25, gamma=0.15, sigma=0.6),
    "poisson": dict(mu=np.log(0.1), theta=-0.3, gamma=0.2),
    "negative_binomial": dict(mu=np.log(0.1), theta=-0.3, gamma=0.2, phi=5.0),
}
# random-effect SDs on the link scale, multiplied by `scale` (gaussian outcomes have larger units)
SCALE = {"gaussian": 4.0}


def simulate(
    family: str = "bernoulli",
    design: str = "stepped_wedge",
    n_clusters: int = 14,
    n_periods: int = 8,
    n_per_cp: int = 60,
    seed: int = 1,
    sd_site: float = 0.2,
    sd_cluster: float = 0.3,
    sd_cp: float = 0.1,
    age_effect: float = 0.2,
    fidelity: bool = False,
    **overrides,
):
    """Return (cells, rows, alignment, truth)."""
    rng = np.random.default_rng(seed)
    tr = {**TRUTH[family], **overrides}
    k = SCALE.get(family, 1.0)
    clusters = [f"c{j:02d}" for j in range(n_clusters)]
    site = np.array(["s1", "s2"])[np.arange(n_clusters) % 2]
    if design == "stepped_wedge":
        starts = 2 + (np.arange(n_clusters) * (n_periods - 1)) // n_clusters
    else:  # controlled before-after: half start mid-way, half never (start = inf)
        starts = np.where(np.arange(n_clusters) % 2 == 0, n_periods // 2 + 1, 10**6)
    starts = rng.permutation(starts)
    align = pd.Series(rng.normal(3.5, 0.6, n_clusters), index=clusters, name="alignment")
    A = ((align - align.mean()) / align.std(ddof=1)).to_numpy()
    u = dict(zip(["s1", "s2"], rng.normal(0, sd_site * k, 2), strict=True))
    v = rng.normal(0, sd_cluster * k, n_clusters)
    trend = np.cumsum(rng.normal(0, 0.05 * k, n_periods)) + 0.03 * k * np.arange(n_periods)

    rows = []
    for j, c in enumerate(clusters):
        for t in range(1, n_periods + 1):
            treated = int(t >= starts[j])
            e = t - starts[j] + 1 if treated else 0
            w = rng.normal(0, sd_cp * k)
            fid = rng.uniform(0.3, 1.0) if treated else np.nan
            age = rng.choice(["<65", "65-79", "80+"], size=n_per_cp, p=[0.3, 0.4, 0.3])
            b_age = np.select([age == "65-79", age == "80+"], [age_effect * k, 2 * age_effect * k])
            eta = (
                tr["mu"]
                + trend[t - 1]
                + b_age
                + treated * (tr["theta"] + tr["gamma"] * A[j])
                + u[site[j]]
                + v[j]
                + w
            )
            df = pd.DataFrame(
                {
                    "cluster": c,
                    "site": site[j],
                    "period": t,
                    "treated": treated,
                    "exposure_time": e,
                    "age": age,
                }
            )
            if fidelity:
                df["fidelity"] = fid
            if family in ("bernoulli", "binomial"):
                df["y"] = rng.binomial(1, expit(eta))
            elif family == "gaussian":
                df["y"] = rng.normal(eta, tr["sigma"])
            elif family == "lognormal":
                df["y"] = np.exp(rng.normal(eta, tr["sigma"]))
            else:
                expo = rng.uniform(2, 8, n_per_cp).round(1)
                m = expo * np.exp(eta)
                if family == "poisson":
                    df["y"] = rng.poisson(m)
                else:
                    df["y"] = rng.negative_binomial(tr["phi"], tr["phi"] / (tr["phi"] + m))
                df["exp"] = expo
            rows.append(df)
    rows = pd.concat(rows, ignore_index=True)
    return aggregate(rows, family), to_row_cells(rows, family), align, tr


KEYS = ["cluster", "site", "period", "treated", "exposure_time", "age"]


def to_row_cells(rows: pd.DataFrame, family: str) -> pd.DataFrame:
    """Row-level table in cell form (n = 1)."""
    out = rows[[c for c in rows if c in KEYS or c == "fidelity"]].copy()
    out["n"] = 1
    y = rows["y"].to_numpy(float)
    if family in ("bernoulli", "binomial"):
        out["events"] = y
    elif family in ("gaussian", "lognormal"):
        ly = np.log(y) if family == "lognormal" else y
        out["sum"], out["sumsq"] = ly, ly**2
    else:
        out["count"], out["exposure"] = y, rows["exp"].to_numpy(float)
    return out


def aggregate(rows: pd.DataFrame, family: str) -> pd.DataFrame:
    """Cluster-period x covariate-pattern cells with the family's sufficient statistics."""
    r = to_row_cells(rows, family)
    stats = [c for c in ("events", "sum", "sumsq", "count", "exposure") if c in r]
    keys = KEYS + (["fidelity"] if "fidelity" in r else [])
    return r.groupby(keys, dropna=False, as_index=False)[["n", *stats]].sum()
