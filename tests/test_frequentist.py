"""Tests of qialign.frequentist: geeCRT reference numbers, recovery, sandwich ordering, errors."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from qialign.frequentist import (
    METHODS,
    build_design,
    cross_check,
    fit_gee,
    fit_mixedlm,
    sandwich_covariances,
)

GEECRT_DIR = Path(__file__).parent / "data" / "geecrt"  # copied from geeCRT 1.1.4, see its README

# Published treatment rows of the geeCRT 1.1.4 vignette (Yu, Li, Rathouz, Turner, Preisser;
# R package geeCRT, "geeCRT package" vignette): individual-level GEE, geemaee(alpadj = FALSE,
# makevone = FALSE, maxiter = 500, epsilon = 0.001), mean model period dummies + treatment, no
# intercept. Columns: estimate, MB, BC0, BC1, BC2, BC3 standard errors.
GEECRT_REFERENCE = [
    (
        "Small",
        "y_con",
        "nested_exchangeable",
        -0.1857484,
        0.1828737,
        0.14726062,
        0.1602631,
        0.1744810,
        0.1599123,
    ),
    (
        "Small",
        "y_bin",
        "nested_exchangeable",
        -0.9942493,
        0.4649278,
        0.5404357,
        0.5954360,
        0.6566581,
        0.5926395,
    ),
    (
        "Large",
        "y_con",
        "nested_exchangeable",
        -0.08318282,
        0.1259570,
        0.13859217,
        0.1531209,
        0.1692063,
        0.1516836,
    ),
    (
        "Large",
        "y_bin",
        "nested_exchangeable",
        -0.81865546,
        0.2768705,
        0.2801134,
        0.3070590,
        0.3367553,
        0.3032859,
    ),
    ("Small", "y_con", "exchangeable", -0.1832029, 0.1728612, 0.1526576, 0.1662888, 0.1812008, 0.1665749),
    ("Small", "y_bin", "exchangeable", -0.9820253, 0.4257111, 0.5412118, 0.5961231, 0.6573418, 0.5951026),
]
# Same vignette, nested exchangeable correlation parameters (alpha0 within, alpha1 between period).
GEECRT_ALPHA = {
    ("Small", "y_con"): (0.05304519, 0.03019984),
    ("Small", "y_bin"): (0.06909291, 0.03017185),
}
FAMILY = {"y_con": "gaussian", "y_bin": "binomial"}
SE_KINDS = ("model", "robust", "kc", "md", "fg")


def _geecrt(name: str) -> pd.DataFrame:
    return pd.read_csv(GEECRT_DIR / f"sampleSWCRT{name}.csv")  # missing data fail the test


def _geecrt_fit(name, outcome, corstr, tol=1e-3):
    d = _geecrt(name)
    X = d[[f"period{t}" for t in range(1, d.period.max() + 1)] + ["treatment"]]
    return fit_gee(d[outcome], X, d.id, family=FAMILY[outcome], corstr=corstr, period=d.period, tol=tol)


@pytest.mark.parametrize("row", GEECRT_REFERENCE, ids=lambda r: "-".join(r[:3]))
def test_gee_reproduces_geecrt_vignette(row):
    name, outcome, corstr, est, *ses = row
    fit = _geecrt_fit(name, outcome, corstr)
    assert fit.converged and fit.note == ""
    assert fit.params["treatment"] == pytest.approx(est, abs=2e-3)
    for kind, ref in zip(SE_KINDS, ses, strict=True):
        assert fit.se(kind)["treatment"] == pytest.approx(ref, abs=2e-3), kind
    # In fact the implementation agrees to all printed digits.
    assert fit.params["treatment"] == pytest.approx(est, abs=1e-6)
    for kind, ref in zip(SE_KINDS, ses, strict=True):
        assert fit.se(kind)["treatment"] == pytest.approx(ref, abs=1e-6), kind
    if (name, outcome) in GEECRT_ALPHA and corstr == "nested_exchangeable":
        np.testing.assert_allclose(fit.alpha.to_numpy(), GEECRT_ALPHA[name, outcome], atol=1e-7)
    assert fit.df == 12 - len(fit.params)


def test_default_tolerance_stays_close_to_geecrt():
    fit = _geecrt_fit("Small", "y_bin", "nested_exchangeable", tol=1e-8)
    assert fit.params["treatment"] == pytest.approx(-0.9942493, abs=2e-3)
    assert fit.se("md")["treatment"] == pytest.approx(0.6566581, abs=2e-3)


def test_statsmodels_exchangeable_gee_agrees_with_numpy_gee():
    """Independent implementation: statsmodels' GEE (own moment estimator of alpha)."""
    import statsmodels.api as sm

    d = _geecrt("Small")
    X = d[["period1", "period2", "period3", "period4", "treatment"]]
    ours = fit_gee(d.y_con, X, d.id, family="gaussian", corstr="exchangeable")
    model = sm.GEE(d.y_con, X, groups=d.id, cov_struct=sm.cov_struct.Exchangeable())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sm_robust = model.fit()
        sm_md = model.fit(cov_type="bias_reduced")
    assert sm_robust.params["treatment"] == pytest.approx(ours.params["treatment"], abs=2e-3)
    assert sm_robust.bse["treatment"] == pytest.approx(ours.se("robust")["treatment"], abs=2e-3)
    assert sm_md.bse["treatment"] == pytest.approx(ours.se("md")["treatment"], abs=2e-3)


def test_cross_check_on_geecrt_data_matches_reference_and_t_interval():
    from scipy import stats

    d = _geecrt("Small").rename(columns={"id": "cluster", "treatment": "treated", "y_con": "y"})
    out = cross_check(d, "gaussian", tol=1e-3)
    assert set(out["method"]) == set(METHODS)
    row = out.query("method == 'gee_nested_exchangeable_md' and estimand == 'treatment_effect'").iloc[0]
    assert row.estimate == pytest.approx(-0.1857484, abs=1e-6)
    assert row.se == pytest.approx(0.1744810, abs=1e-6)
    assert row.df == 12 - 5
    q = stats.t.ppf(0.975, 7)
    assert row.lower == pytest.approx(row.estimate - q * row.se)
    nat = out.query("method == 'gee_nested_exchangeable_md' and estimand == 'treatment_effect_natural'")
    assert nat.iloc[0].estimate == row.estimate  # gaussian: natural scale == link scale
    glm = out.query("method == 'glm_cluster_robust'").iloc[0]
    assert glm.df == 11
    assert (out["note"] == "").all()


# ----------------------------------------------------------------------------- simulation
def _simulate_sw(
    seed,
    *,
    clusters=12,
    periods=5,
    m=15,
    theta=0.5,
    sd_cluster=0.5,
    sd_cp=0.3,
    sd_e=1.0,
    gamma=0.0,
    family="gaussian",
):
    """Cross-sectional stepped wedge: clusters start in equal groups at periods 2..T."""
    rng = np.random.default_rng(seed)
    start = 2 + np.arange(clusters) * (periods - 1) // clusters
    align = rng.normal(size=clusters)
    align = (align - align.mean()) / align.std(ddof=1)
    rows = []
    for j in range(clusters):
        u = rng.normal(0, sd_cluster)
        for t in range(1, periods + 1):
            w = rng.normal(0, sd_cp)
            x = int(t >= start[j])
            eta = 0.1 * t + u + w + x * (theta + gamma * align[j])
            if family == "gaussian":
                y = eta + rng.normal(0, sd_e, size=m)
                rows += [(f"c{j}", t, x, align[j], v) for v in y]
            else:  # one cluster-period count cell with exposure (log link, multiplicative frailty)
                expo = rng.uniform(80, 120)
                rows.append((f"c{j}", t, x, align[j], rng.poisson(expo * np.exp(eta - 2)), expo))
    cols = ["cluster", "period", "treated", "alignment_z", "y"] + (
        [] if family == "gaussian" else ["exposure"]
    )
    d = pd.DataFrame(rows, columns=cols)
    d["site"] = "s1"
    d["exposure_time"] = 0
    return d


def test_recovery_gaussian_gee_and_mixedlm_variance_components():
    d = _simulate_sw(20261126, clusters=16, m=15, theta=0.5)
    out = cross_check(d, "gaussian")
    te = out[out.estimand == "treatment_effect"].set_index("method")
    for method in ("gee_nested_exchangeable_md", "gee_exchangeable_md", "mixedlm", "glm_cluster_robust"):
        assert abs(te.loc[method, "estimate"] - 0.5) < 3 * te.loc[method, "se"], method
        assert te.loc[method, "lower"] < te.loc[method, "estimate"] < te.loc[method, "upper"]
    des = build_design(d, "gaussian")
    mr = fit_mixedlm(des.y, des.X, des.cluster, des.period)
    assert mr.converged and mr.note == ""
    assert mr.var_residual == pytest.approx(1.0, rel=0.15)
    assert 0.25 * 0.25 < mr.var_cluster < 4 * 0.25
    assert 0.09 / 4 < mr.var_cluster_period < 4 * 0.09


def test_recovery_counts_and_alignment_moderation():
    d = _simulate_sw(
        7, clusters=16, periods=5, theta=-0.4, gamma=0.3, sd_cluster=0.3, sd_cp=0.1, family="poisson"
    )
    out = cross_check(d, "negative_binomial", moderators=["alignment_z"])
    assert "mixedlm" not in set(out.method)
    row = out.query("method == 'gee_exchangeable_md'").set_index("estimand")
    assert set(row.index) == {"treatment_effect", "treatment_effect_natural", "alignment_interaction"}
    te, ai = row.loc["treatment_effect"], row.loc["alignment_interaction"]
    assert abs(te.estimate + 0.4) < 3 * te.se
    assert abs(ai.estimate - 0.3) < 3 * ai.se
    nat = row.loc["treatment_effect_natural"]
    assert nat.scale == "rate ratio"
    assert nat.estimate == pytest.approx(np.exp(te.estimate))
    assert nat.lower == pytest.approx(np.exp(te.lower))
    # one row per cluster-period: no within-period pairs, the nested structure says so
    nested = out.query("method == 'gee_nested_exchangeable_robust'").iloc[0]
    assert "alpha0_within_period has no pairs" in nested.note
    assert np.isfinite(nested.estimate)


def test_binomial_cells_equal_row_level():
    rng = np.random.default_rng(3)
    d = _simulate_sw(3, clusters=8, periods=4, m=12)
    d["y"] = (rng.uniform(size=len(d)) < 0.3 + 0.1 * d.treated).astype(int)
    cells = d.groupby(["cluster", "period"], as_index=False).agg(
        treated=("treated", "first"), events=("y", "sum"), n=("y", "size")
    )
    methods = ("gee_nested_exchangeable_fg", "glm_cluster_robust")
    rows = cross_check(d, "bernoulli", methods=methods)
    agg = cross_check(cells, "binomial", level="cell", methods=methods)
    np.testing.assert_allclose(rows[["estimate", "se"]], agg[["estimate", "se"]], rtol=1e-6)


# ----------------------------------------------------------------------------- sandwich ordering
def _pieces_linear(seed, p_cols):
    rng = np.random.default_rng(seed)
    D, V, r = [], [], []
    for n in rng.integers(2, 7, size=6):  # six small clusters
        X = np.column_stack([np.ones(n), rng.normal(size=n)])[:, :p_cols]
        R = 0.3 * np.ones((n, n)) + 0.7 * np.eye(n)
        D.append(X)
        V.append(R)
        r.append(rng.normal(size=n) + rng.normal())
    # residuals of the GLS fit so that sum_i U_i = 0 as at a GEE solution
    info = sum(Xi.T @ np.linalg.solve(Vi, Xi) for Xi, Vi in zip(D, V, strict=True))
    score = sum(Xi.T @ np.linalg.solve(Vi, ri) for Xi, Vi, ri in zip(D, V, r, strict=True))
    b = np.linalg.solve(info, score)
    return D, V, [ri - Xi @ b for Xi, ri in zip(D, r, strict=True)]


@pytest.mark.parametrize("seed", range(5))
def test_sandwich_ordering_guaranteed_for_one_parameter(seed):
    cov = sandwich_covariances(*_pieces_linear(seed, 1))
    bc0, fg, kc, md = (cov[k][0, 0] for k in ("robust", "fg", "kc", "md"))
    assert bc0 <= fg + 1e-15 <= kc + 2e-15 <= md + 3e-15


@pytest.mark.parametrize("seed", range(5))
def test_kc_between_bounds_for_every_coefficient(seed):
    cov = sandwich_covariances(*_pieces_linear(seed, 2))
    kc, md, bc0 = (np.diag(cov[k]) for k in ("kc", "md", "robust"))
    assert np.all(kc <= (md + bc0) / 2 + 1e-12)
    assert np.all(np.diag(cov["model"]) > 0)


def test_geecrt_reference_ordering_reproduced():
    fit = _geecrt_fit("Small", "y_con", "nested_exchangeable")
    se = {k: fit.se(k)["treatment"] for k in SE_KINDS}
    assert se["robust"] < se["fg"] < se["kc"] < se["md"]


# ----------------------------------------------------------------------------- errors
def test_wrong_arguments_raise_value_error():
    d = _simulate_sw(1, clusters=6, periods=3, m=3)
    with pytest.raises(ValueError, match="family"):
        cross_check(d, "weibull")
    with pytest.raises(ValueError, match="trend"):
        cross_check(d, "gaussian", trend="spline")
    with pytest.raises(ValueError, match="level"):
        cross_check(d, "gaussian", level="ward")
    with pytest.raises(ValueError, match="column"):
        cross_check(d, "gaussian", moderators=["fidelity"])
    with pytest.raises(ValueError, match="method"):
        cross_check(d, "gaussian", methods=["gee_ar1"])
    with pytest.raises(ValueError, match="0/1"):
        cross_check(d, "bernoulli")
    with pytest.raises(ValueError, match="interval"):
        cross_check(d, "gaussian", interval=95)


def test_numerical_failure_gives_nan_rows_with_note():
    d = _simulate_sw(2, clusters=6, periods=3, m=3)
    d["treated"] = 0  # no treated cell: the treatment effect is not estimable
    out = cross_check(d, "gaussian")
    te = out[out.estimand == "treatment_effect"]
    assert len(te) == len(METHODS)
    assert te["estimate"].isna().all()
    assert te["note"].str.len().gt(0).all()


def test_lognormal_is_log_y_and_ratio_of_means():
    d = _simulate_sw(5, clusters=8, periods=4, m=5)
    d2 = d.assign(y=np.exp(d.y))
    a = cross_check(d, "gaussian", methods=["gee_exchangeable_robust"])
    b = cross_check(d2, "lognormal", methods=["gee_exchangeable_robust"])
    assert b.estimate.iloc[0] == pytest.approx(a.estimate.iloc[0])
    assert b.scale.tolist() == ["log-mean", "ratio of geometric means"]
    assert b.estimate.iloc[1] == pytest.approx(np.exp(a.estimate.iloc[0]))


def test_structured_solver_matches_dense_sandwich():
    """fit_gee's Woodbury / push-through path equals the dense formulas of sandwich_covariances."""
    d = _geecrt("Small")
    X = d[["period1", "period2", "period3", "period4", "treatment"]]
    fit = fit_gee(d.y_con, X, d.id, family="gaussian", corstr="nested_exchangeable", period=d.period)
    a0, a1 = fit.alpha
    Xa, r = X.to_numpy(float), (d.y_con - X @ fit.params).to_numpy()
    D, V, res = [], [], []
    for k in np.unique(d.id):
        i = np.flatnonzero(d.id.to_numpy() == k)
        same = d.period.to_numpy()[i][:, None] == d.period.to_numpy()[i][None, :]
        R = np.where(same, a0, a1)
        np.fill_diagonal(R, 1.0)
        D.append(Xa[i])
        V.append(fit.scale * R)
        res.append(r[i])
    dense = sandwich_covariances(D, V, res)
    for kind in SE_KINDS:
        np.testing.assert_allclose(fit.cov[kind].to_numpy(), dense[kind], rtol=1e-8, atol=1e-12)


def test_gaussian_cells_weighted_by_n():
    d = _simulate_sw(11, clusters=8, periods=4, m=6)
    cells = d.groupby(["cluster", "period"], as_index=False).agg(
        treated=("treated", "first"), mean=("y", "mean"), sd=("y", "std"), n=("y", "size")
    )
    rows = cross_check(d, "gaussian")
    agg = cross_check(cells, "gaussian", level="cell")
    assert list(agg.method) == list(rows.method)  # every method, nested GEE and MixedLM too
    glm = agg.query("method == 'glm_cluster_robust'")
    assert glm.estimate.iloc[0] == pytest.approx(
        rows.query("method == 'glm_cluster_robust'").estimate.iloc[0]
    )
    assert agg.estimate.notna().all()


def test_gee_df_falls_back_when_periods_exhaust_the_clusters():
    from qialign.frequentist.crosscheck import gee_df

    assert gee_df(8, 12) == (8, "")
    df, why = gee_df(-12, 7)
    assert df == 5 and "clusters - 2 = 5" in why
