"""Small-sample references of the frequentist cross-checks, each against a direct computation:
segmented regression's t intervals on n - p df (statsmodels' own t on the same fit), MixedLM's t on
clusters - p (a hand computation on a tiny stepped wedge)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import statsmodels.api as sm
from scipy import stats

from qialign.frequentist import cross_check
from qialign.frequentist.its import segmented_regression
from qialign.frequentist.mixed import fit_mixedlm


def _series(seed=3, n=24, t0=13):
    rng = np.random.default_rng(seed)
    t = np.arange(1, n + 1, dtype=float)
    post = (t >= t0).astype(float)
    y = 2 + 0.05 * t - 0.8 * post + 0.1 * (t - t0) * post + rng.normal(0, 0.4, n)
    return pd.DataFrame({"t": t, "y": y}), t0


def test_its_t_intervals_equal_statsmodels_ols_t_on_the_same_fit():
    d, t0 = _series()
    res = segmented_regression(
        d, count="y", time="t", interruption=t0, family="gaussian", alpha=0.1, reference="t"
    )
    X = res.design.to_numpy(float)
    ols = sm.OLS(d["y"].to_numpy(), X).fit()  # statsmodels: t on df_resid, dispersion RSS / (n - p)
    assert res.df_resid == ols.df_resid == 24 - 4
    ci = ols.conf_int(alpha=0.1)
    np.testing.assert_allclose(res.terms[["ci_low", "ci_high"]].to_numpy(), ci, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(res.terms["p"], ols.pvalues, rtol=1e-8)
    wald = segmented_regression(d, count="y", time="t", interruption=t0, family="gaussian", alpha=0.1)
    z = stats.norm.ppf(0.95)
    lvl = wald.term("level")
    assert lvl["ci_high"] == lvl["estimate"] + z * lvl["se"]  # the default stays Wald (tutorial)
    assert res.term("level")["ci_high"] > lvl["ci_high"]  # t is wider


def _tiny_stepped_wedge(seed=5, clusters=6, periods=4, m=4):
    rng = np.random.default_rng(seed)
    start = [2, 2, 3, 3, 4, 4]
    rows = []
    for j in range(clusters):
        u = rng.normal(0, 0.5)
        for t in range(1, periods + 1):
            x = int(t >= start[j])
            rows += [(f"c{j}", t, x, 0.1 * t + u + 0.5 * x + e) for e in rng.normal(0, 1, m)]
    return pd.DataFrame(rows, columns=["cluster", "period", "treated", "y"])


def test_mixedlm_interval_is_t_on_clusters_minus_p_by_hand():
    d = _tiny_stepped_wedge()
    out = cross_check(d, "gaussian", interval=0.9, methods=("mixedlm",)).set_index("estimand")
    row = out.loc["treatment_effect"]
    # p = 4 period effects + treated = 5 fixed effects, 6 clusters: 1 df
    assert row["df"] == 6 - 5
    X = pd.get_dummies(d["period"], prefix="p", dtype=float).assign(treated=d["treated"].astype(float))
    fit = fit_mixedlm(d["y"], X, d["cluster"], d["period"])
    b, se = fit.params["treated"], fit.bse["treated"]
    assert row["estimate"] == np.float64(b) and row["se"] == np.float64(se)
    q = 6.313751514675044  # t_{0.95, 1} = tan(0.45 pi)
    assert abs(q - np.tan(0.45 * np.pi)) < 1e-12
    assert abs(row["lower"] - (b - q * se)) < 1e-10 and abs(row["upper"] - (b + q * se)) < 1e-10
