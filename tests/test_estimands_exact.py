"""Every estimand of real fits equals its direct computation from the posterior draws (to 1e-12).

Written from the definitions (DESIGN §4-5 and the estimands' docstring), not from estimands.py: a
flipped sign, a swapped quantile or a negated difference there fails here. Every family, every
row of ``estimates`` (estimate, interval, label, scale, R-hat, bulk ESS), ``cluster_effects`` and
``counterfactual``; the fits are in tests/estimand_fits.py.
"""

from __future__ import annotations

import dataclasses

import arviz as az
import numpy as np
import pytest
import xarray as xr
from scipy.special import expit

from estimand_fits import FITS, cached_fit, interval
from qialign.families import FAMILIES
from qialign.models.estimands import (
    cluster_effects,
    counterfactual,
    counterfactual_by_period,
    estimates,
    exposure_effects,
)
from qialign.models.marginal import QUADRATURE_NODES
from qialign.results import CORRELATION, LATENT, PROBABILITY, PTE, RISK_RATIO, SD, SHAPE, TATE

# the estimands raise no floating-point warning (0 / 0 of a period without treated cells is
# silenced where it is expected, and nowhere else)
pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")

ABS = 1e-12
RANK_TOL = 1e-3  # rank-based diagnostics of draws computed in another summation order


@pytest.fixture(scope="module", params=list(FITS))
def fitted(request):
    return request.param, cached_fit(request.param)


def draws(fit, name) -> np.ndarray:
    return np.asarray(fit.idata["posterior"][name], float)


def bounds(x: np.ndarray, iv: dict) -> np.ndarray:
    """Equal-tailed: the (1 -+ prob) / 2 quantiles; HDI: the narrowest of the intervals spanning
    floor(prob S) + 1 sorted draws. Over (chain, draw) -> (2[, k])."""
    prob, kind = iv.get("prob", 0.95), iv.get("kind", "eti")
    flat = x.reshape(-1, *x.shape[2:])
    if kind == "eti":
        return np.quantile(flat, [(1 - prob) / 2, (1 + prob) / 2], axis=0)
    s = np.sort(flat, axis=0)
    k = int(np.floor(prob * len(s)))
    i = np.argmin(s[k:] - s[: len(s) - k], axis=0)
    cols = np.arange(s.shape[1]) if s.ndim > 1 else ...
    return np.stack([s[i, cols], s[i + k, cols]])


def label(iv: dict) -> str:
    return {(0.9, "eti"): "eti90", (0.8, "hdi"): "hdi80", (0.5, "eti"): "eti50"}.get(
        (iv.get("prob", 0.95), iv.get("kind", "eti")), "eti95"
    )


def convergence(x: np.ndarray, refits: int = 1) -> tuple[float, float]:
    """Rank-normalised R-hat and bulk ESS; per refit group (worst R-hat, summed ESS)."""
    groups = np.split(x, refits)
    da = [xr.DataArray(g, dims=["chain", "draw"]) for g in groups]
    return max(float(az.rhat(g)) for g in da), sum(float(az.ess(g)) for g in da)


def y_scale(fit) -> float:
    return fit.design.y_scale if fit.spec.family in ("gaussian", "lognormal") else 1.0


def natural(fit, x):
    return x if fit.spec.family == "gaussian" else np.exp(x)


def mean_outcome(fit, x, sigma=None):
    """E[y] per patient of each cell given link-scale draws x (.., cell)."""
    d, fam = fit.design, fit.spec.family
    if fam in ("bernoulli", "binomial"):
        return expit(x)
    if fam in ("poisson", "negative_binomial"):
        return np.exp(x) * d.y["exposure"] / d.n
    m = d.y_center + d.y_scale * x
    if fam == "gaussian":
        return m
    s = draws(fit, "sigma")[..., None] * d.y_scale
    return np.exp(m + s**2 / 2)


def off_on(fit):
    """Linear predictor as assigned, with the intervention off, and fully on (DESIGN §4)."""
    d = fit.design
    eta = draws(fit, "eta")
    off = eta - draws(fit, "tx")
    return eta, off, off + cluster_effect(fit)[..., d.cluster_idx] / y_scale(fit)


def cluster_effect(fit) -> np.ndarray:
    """theta + gamma z_j + delta_j (delta_j = sd_treatment x z_treatment_j), scaled to y units."""
    d, post = fit.design, fit.idata["posterior"]
    ce = draws(fit, "treatment_effect")[..., None] * np.ones(len(d.clusters))
    if "alignment_interaction" in post:
        ce = ce + draws(fit, "alignment_interaction")[..., None] * d.A
    if "sd_treatment" in post:
        ce = ce + draws(fit, "sd_treatment")[..., None] * draws(fit, "z_treatment")
    return ce * y_scale(fit)


def new_cluster_outcomes(fit) -> tuple[np.ndarray, np.ndarray]:
    """A new cluster's expected outcome per patient without / with the intervention: every cell's
    fixed predictor mu + f(t) + harmonics + Z beta (alignment at its mean), integrated over the
    random intercept N(0, sd_site^2 + sd_cluster^2 + sd_cp^2) (plus sd_treatment^2 when treated)
    on the same Gauss-Hermite nodes, averaged with weight n."""
    d, post = fit.design, fit.idata["posterior"]
    trend = draws(fit, "trend") if "trend" in post else np.zeros((*draws(fit, "mu").shape, 1))
    per = trend - trend.mean(-1, keepdims=True)
    if "b_season" in post:
        per = per + np.einsum("cdk,tk->cdt", draws(fit, "b_season"), d.season)
    x = draws(fit, "mu")[..., None] + per[..., d.period_idx] * (len(d.periods) > 1)
    if d.Z.shape[1]:
        x = x + np.einsum("cdk,nk->cdn", draws(fit, "beta"), d.Z)
    var0 = sum(draws(fit, v) ** 2 for v in ("sd_site", "sd_cluster", "sd_cluster_period") if v in post)
    var0 = var0 + np.zeros_like(draws(fit, "mu"))
    var1 = var0 + (draws(fit, "sd_treatment") ** 2 if "sd_treatment" in post else 0)
    z, w = np.polynomial.hermite_e.hermegauss(QUADRATURE_NODES)
    theta = draws(fit, "treatment_effect")[..., None]

    def integrated(shift, var):
        sd = np.sqrt(var)[..., None]
        total = sum(wk * mean_outcome(fit, x + shift + sd * zk) for zk, wk in zip(z, w, strict=True))
        return (total / np.sqrt(2 * np.pi) * d.n).sum(-1) / d.n.sum()

    return integrated(0.0, var0), integrated(theta, var1)


def population_averaged_rows(fit) -> dict:
    """pa_difference, pa_ratio (binary, count) and pa_odds_ratio (binary) from those outcomes."""
    fam = FAMILIES[fit.spec.family]
    p0, p1 = new_cluster_outcomes(fit)
    rows = {"pa_difference": (fam.marginal_scale, p1 - p0)}
    if fam.kind == "binary":
        rows["pa_ratio"] = (RISK_RATIO, p1 / p0)
        rows["pa_odds_ratio"] = ("odds ratio", p1 / (1 - p1) * (1 - p0) / p0)
    if fam.kind == "count":
        rows["pa_ratio"] = ("rate ratio", p1 / p0)
    return rows


def icc_and_cac(fit):
    """Latent-scale ICC and lag-1 cluster autocorrelation (module docstring of estimands)."""
    d, post, fam = fit.design, fit.idata["posterior"], fit.spec.family
    zero = np.zeros_like(draws(fit, "treatment_effect"))
    site, cl, cp = (
        draws(fit, v) ** 2 if v in post else zero for v in ("sd_site", "sd_cluster", "sd_cluster_period")
    )
    if fam in ("bernoulli", "binomial"):
        s1 = np.pi**2 / 3
    elif fam in ("gaussian", "lognormal"):
        s1 = draws(fit, "sigma") ** 2
    else:
        units = d.n.sum() if fit.spec.overdispersion == "patient" else len(d.n)
        lam = np.exp(draws(fit, "mu")) * d.y["exposure"].sum() / units
        s1 = np.log(1 + 1 / lam + (1 / draws(fit, "phi") if fam == "negative_binomial" else 0))
    between = site + cl + cp
    rho = draws(fit, "rho") if "rho" in post else 0
    cac = (site + cl + rho * cp) / between if "sd_cluster_period" in post else None
    return between / (between + s1), cac


def expected_rows(fit, name) -> dict:
    """estimand -> (scale, draws or None for no interval, estimate)."""
    post, fam, ys, d = fit.idata["posterior"], FAMILIES[fit.spec.family], y_scale(fit), fit.design
    theta = draws(fit, "treatment_effect") * ys
    link, nat = fam.link_scale, fam.natural_scale
    rows = {"treatment_effect": (link, theta), "treatment_effect_natural": (nat, natural(fit, theta))}
    if "slope_change" in post:
        kappa = draws(fit, "slope_change") * ys
        rows |= {"slope_change": (link, kappa), "slope_change_natural": (nat, natural(fit, kappa))}
    if "alignment_interaction" in post:
        gamma = draws(fit, "alignment_interaction") * ys
        lo, hi = np.quantile(d.A, 0.1), np.quantile(d.A, 0.9)
        assert lo < 0 < hi
        rows |= {
            "alignment_main": (link, draws(fit, "alignment_main") * ys),
            "alignment_interaction": (link, gamma),
            "effect_low_alignment": (link, theta + gamma * lo),
            "effect_high_alignment": (link, theta + gamma * hi),
        }
    if "fidelity_interaction" in post:
        rows["fidelity_interaction"] = (link, draws(fit, "fidelity_interaction") * ys)
    rows |= exposure_time_rows(fit)
    better = theta < 0 if fit.spec.better == "lower" else theta > 0
    rows["prob_beats_trend"] = (PROBABILITY, None, better.mean())
    _, off, on = off_on(fit)
    diff = ((mean_outcome(fit, on) - mean_outcome(fit, off)) * d.n).sum(-1) / d.n.sum()
    rows["marginal_difference"] = (fam.marginal_scale, diff)
    rows |= population_averaged_rows(fit)
    for v in ("sd_site", "sd_cluster", "sd_cluster_period", "sd_treatment"):
        if v in post:
            rows[v] = (link, draws(fit, v) * ys)
    if "sigma" in post:
        rows["sigma"] = (SD, draws(fit, "sigma") * ys)
    if "phi" in post:
        rows["phi"] = (SHAPE, draws(fit, "phi"))
    if "rho" in post:
        rows["rho"] = (CORRELATION, draws(fit, "rho"))
    if len(d.clusters) > 1:
        icc, cac = icc_and_cac(fit)
        rows["icc"] = (LATENT, icc)
        rows["cac"] = (LATENT, cac) if cac is not None else (LATENT, "ones")
    return rows


def exposure_time_rows(fit) -> dict:
    """eti: tate = the mean of theta_e over the window's exposure times, pte = theta_e at pte_at."""
    if fit.spec.exposure != "eti":
        return {}
    fam, levels = FAMILIES[fit.spec.family], list(fit.design.eti_levels)
    e = draws(fit, "theta_e") * y_scale(fit)
    (a, b), k = fit.spec.estimand_window, fit.spec.pte_at
    tate, pte = e[..., [i for i, x in enumerate(levels) if a <= x <= b]].mean(-1), e[..., levels.index(k)]
    assert levels[0] < a and b < levels[-1] and k < levels[-1]  # not the default window and point
    return {
        TATE: (fam.link_scale, tate),
        f"{TATE}_natural": (fam.natural_scale, natural(fit, tate)),
        PTE: (fam.link_scale, pte),
        f"{PTE}_natural": (fam.natural_scale, natural(fit, pte)),
    }


def test_every_estimand_equals_its_direct_computation(fitted):
    name, fit = fitted
    iv = interval(name)
    est = estimates(fit, iv)
    expected = expected_rows(fit, name)
    assert list(est.columns) == [
        *("estimand", "conditioning", "population", "scale", "estimate", "lower", "upper"),
        *("interval", "r_hat", "ess_bulk"),
    ]
    assert sorted(est["estimand"]) == sorted(expected)
    assert est["estimand"].is_unique
    for _, r in est.iterrows():
        scale, x, *point = expected[r["estimand"]]
        assert r["scale"] == scale, r["estimand"]
        if x is None:  # a probability: no interval, no convergence figures
            assert r["estimate"] == pytest.approx(point[0], abs=ABS)
            assert r[["lower", "upper", "r_hat", "ess_bulk"]].isna().all() and r["interval"] == ""
            continue
        if isinstance(x, str):  # cac without a cluster-period term: exactly 1, no R-hat
            assert (r["estimate"], r["lower"], r["upper"], r["interval"]) == (1.0, 1.0, 1.0, label(iv))
            assert np.isnan(r["r_hat"]) and np.isnan(r["ess_bulk"])
            continue
        np.testing.assert_allclose(
            r[["estimate", "lower", "upper"]].to_numpy(float),
            [x.mean(), *bounds(x, iv)],
            atol=ABS,
            rtol=0,
            err_msg=r["estimand"],
        )
        assert r["interval"] == label(iv)
        # R-hat and ESS are rank-based: draws equal to 1e-15 but summed in another order (the
        # quadrature of the population-averaged rows) may swap two near-tied ranks
        tol = RANK_TOL if r["estimand"].startswith("pa_") else ABS
        assert (r["r_hat"], r["ess_bulk"]) == pytest.approx(convergence(x), abs=tol), r["estimand"]


def test_the_probability_counts_the_better_side():
    """better: lower counts theta < 0 and better: higher theta > 0 (two fits, two directions)."""
    for name in ("binomial", "poisson"):
        fit = cached_fit(name)
        theta = draws(fit, "treatment_effect")
        p = estimates(fit).set_index("estimand").loc["prob_beats_trend", "estimate"]
        better, worse = ((theta < 0), (theta > 0)) if FITS[name][1] == "lower" else ((theta > 0), (theta < 0))
        assert p == better.mean()
        assert p != worse.mean()  # a flipped direction would be seen


def test_the_probability_counts_the_better_side_of_draws_on_both_sides():
    """The same centred draws of theta: better: higher counts theta > 0 and better: lower theta < 0,
    and the two add to one."""
    fit = cached_fit("binomial")
    post = fit.idata["posterior"].to_dataset()
    theta = post["treatment_effect"] - float(np.median(post["treatment_effect"])) + 1e-9
    centred = with_posterior(fit, post.assign(treatment_effect=theta))
    p = {}
    for better in ("lower", "higher"):
        alt = dataclasses.replace(centred, spec=dataclasses.replace(fit.spec, better=better))
        p[better] = estimates(alt).set_index("estimand").loc["prob_beats_trend", "estimate"]
    x = np.asarray(theta)
    assert (p["lower"], p["higher"]) == ((x < 0).mean(), (x > 0).mean())
    assert 0.4 < p["higher"] < 0.6 and p["lower"] + p["higher"] == 1


def test_exposure_effects(fitted):
    """Per exposure time the effect draws: theta_e (eti), theta + kappa (e - 1) (a slope change),
    theta otherwise; mean and interval on the link and natural scale."""
    name, fit = fitted
    iv, d, fam = interval(name), fit.design, FAMILIES[fit.spec.family]
    out = exposure_effects(fit, iv)
    levels = np.asarray(d.eti_levels, int)
    if fit.spec.exposure == "eti":
        e = draws(fit, "theta_e")
    else:
        e = draws(fit, "treatment_effect")[..., None] * np.ones(len(levels))
        if "slope_change" in fit.idata["posterior"]:
            e = e + draws(fit, "slope_change")[..., None] * (levels - 1)
    e = e * y_scale(fit)
    np.testing.assert_array_equal(out["exposure_time"], levels)
    nat_cols = ["natural_estimate", "natural_lower", "natural_upper"]
    for cols, x in ((["estimate", "lower", "upper"], e), (nat_cols, natural(fit, e))):
        np.testing.assert_allclose(out[cols].to_numpy().T, [x.mean((0, 1)), *bounds(x, iv)], atol=ABS, rtol=0)
    assert set(out["scale"]) == {fam.link_scale} and set(out["natural_scale"]) == {fam.natural_scale}
    assert set(out["interval"]) == {label(iv)}


def test_default_interval_is_eti95():
    fit = cached_fit("binomial")
    r = estimates(fit).set_index("estimand").loc["treatment_effect"]
    theta = draws(fit, "treatment_effect").ravel()
    assert r["interval"] == "eti95"
    np.testing.assert_allclose(
        r[["lower", "upper"]].to_numpy(float), np.quantile(theta, [0.025, 0.975]), atol=ABS
    )


def test_refit_groups_give_worst_rhat_and_summed_ess():
    """Propagation (draws): each refit's chains are a group; R-hat is the worst, ESS the sum.
    The fit's two chains of 100 draws are cut into four of 50, two refits of two chains."""
    fit = cached_fit("binomial")
    post = fit.idata["posterior"].to_dataset()
    four = post.isel(draw=slice(0, 50)).assign_coords(chain=[0, 2])
    four = xr.concat(
        [four, post.isel(draw=slice(50, 100)).assign_coords(chain=[1, 3], draw=four.draw)], "chain"
    )
    fit2 = with_posterior(fit, four.sortby("chain"))
    fit2 = dataclasses.replace(fit2, diagnostics={**fit.diagnostics, "refits": 2})
    r = estimates(fit2).set_index("estimand").loc["treatment_effect"]
    theta = draws(fit2, "treatment_effect")
    assert theta.shape == (4, 50)
    assert (r["r_hat"], r["ess_bulk"]) == pytest.approx(convergence(theta, refits=2), abs=ABS)
    assert r["r_hat"] != pytest.approx(convergence(theta)[0], abs=1e-6)
    assert r["ess_bulk"] != pytest.approx(convergence(theta)[1], abs=1e-6)


def with_posterior(fit, post: xr.Dataset):
    """A copy of the fit with another posterior."""
    idata = fit.idata.copy()
    idata["posterior"] = xr.DataTree(post)
    return dataclasses.replace(fit, idata=idata)


def test_uncertain_alignment_uses_each_draws_quantiles():
    """With alignment_z in the posterior (latent / propagated alignment) the 10th and 90th
    percentiles are taken per draw, and the clusters' alignment_z is its posterior mean."""
    fit = cached_fit("binomial")
    c, s, j = *draws(fit, "treatment_effect").shape, len(fit.design.clusters)
    z = np.random.default_rng(0).normal(size=(c, s, j)) + fit.design.A
    z_da = xr.DataArray(z, dims=("chain", "draw", "cluster"))
    alt = with_posterior(fit, fit.idata["posterior"].to_dataset().assign(alignment_z=z_da))
    est = estimates(alt).set_index("estimand")
    theta, gamma = draws(fit, "treatment_effect"), draws(fit, "alignment_interaction")
    for estimand, q in (("effect_low_alignment", 0.1), ("effect_high_alignment", 0.9)):
        x = theta + gamma * np.quantile(z, q, axis=-1)
        assert est.loc[estimand, "estimate"] == pytest.approx(x.mean(), abs=ABS)
    np.testing.assert_allclose(cluster_effects(alt)["alignment_z"], z.mean(axis=(0, 1)), atol=ABS)


def test_without_stored_predictions_no_marginal_difference_and_no_counterfactual():
    fit = cached_fit("binomial")
    fit = with_posterior(fit, fit.idata["posterior"].to_dataset().drop_vars(["eta", "tx"]))
    est = estimates(fit)
    assert "marginal_difference" not in set(est["estimand"])
    assert "treatment_effect" in set(est["estimand"])
    with pytest.raises(
        ValueError, match=r"^counterfactual needs stored cell predictions \(store_predictions\)$"
    ):
        counterfactual(fit)


def test_cluster_effects(fitted):
    name, fit = fitted
    iv, d, fam = interval(name), fit.design, FAMILIES[fit.spec.family]
    out = cluster_effects(fit, iv)
    ce = cluster_effect(fit)
    np.testing.assert_allclose(ce, draws(fit, "cluster_effect") * y_scale(fit), atol=ABS)
    assert list(out["cluster"]) == d.clusters
    sites = dict(zip(d.cells["cluster"], d.cells["site"], strict=False))
    assert list(out["site"]) == [sites[c] for c in d.clusters]
    if d.A is None:
        assert out[["alignment", "alignment_z"]].isna().all().all()
        assert out["alignment"].dtype == out["alignment_z"].dtype == float
    else:
        np.testing.assert_allclose(out["alignment_z"], d.A, atol=ABS)
        np.testing.assert_allclose(out["alignment"], d.align_raw.loc[d.clusters], atol=ABS)
    lo, hi = bounds(ce, iv)
    np.testing.assert_allclose(
        out[["estimate", "lower", "upper"]].to_numpy().T, [ce.mean((0, 1)), lo, hi], atol=ABS
    )
    nat = natural(fit, ce)
    nlo, nhi = bounds(nat, iv)
    cols = ["natural_estimate", "natural_lower", "natural_upper"]
    np.testing.assert_allclose(out[cols].to_numpy().T, [nat.mean((0, 1)), nlo, nhi], atol=ABS)
    assert set(out["scale"]) == {fam.link_scale} and set(out["natural_scale"]) == {fam.natural_scale}
    assert set(out["interval"]) == {label(iv)}


def per_cluster_period(fit, m):
    """Patient-weighted mean of cell values m (.., cell) within each observed cluster-period."""
    d = fit.design
    keys = list(zip(d.cells["cluster"], d.cells["period"], strict=True))
    cps = list(zip(d.cp_keys["cluster"], d.cp_keys["period"], strict=True))
    out = np.zeros((*m.shape[:-1], len(cps)))
    for k, cp in enumerate(cps):
        cells = np.array([key == cp for key in keys])
        out[..., k] = (m[..., cells] * d.n[cells]).sum(-1) / d.n[cells].sum()
    return out


def cp_mean(fit, x):
    """Expected per-patient outcome of each cluster-period; lognormal: geometric mean exp(E log y)."""
    d = fit.design
    if fit.spec.family == "lognormal":
        return np.exp(per_cluster_period(fit, d.y_center + d.y_scale * x))
    return per_cluster_period(fit, mean_outcome(fit, x))


def test_counterfactual(fitted):
    """Per cluster-period: patient-weighted E[y] as assigned, without and fully with the
    intervention; lognormal: the geometric mean exp(E log y), against the observed one."""
    name, fit = fitted
    iv, d, fam = interval(name), fit.design, fit.spec.family
    out = counterfactual(fit, iv)
    c = d.cells
    assert list(out["cluster"]) == list(d.cp_keys["cluster"]) and list(out["period"]) == list(
        d.cp_keys["period"]
    )
    n = c.groupby(["cluster", "period"])["n"].sum()
    idx = list(zip(out["cluster"], out["period"], strict=True))
    np.testing.assert_array_equal(out["n"], n.loc[idx])
    treated = c.groupby(["cluster", "period"])["treated"].max().loc[idx]
    np.testing.assert_array_equal(out["treated"], treated)
    assert out["treated"].dtype.kind == "i"
    assert out["treated"].sum() > 0 and (out["treated"] == 0).sum() > 0
    total = c.groupby(["cluster", "period"])[FAMILIES[fam].total_column].sum().loc[idx] / n.loc[idx]
    np.testing.assert_allclose(out["observed"], np.exp(total) if fam == "lognormal" else total, rtol=1e-12)
    for what, x in zip(("actual", "without", "with"), off_on(fit), strict=True):
        m = cp_mean(fit, x)
        cols = [f"{what}_mean", f"{what}_lower", f"{what}_upper"]
        np.testing.assert_allclose(
            out[cols].to_numpy().T, [m.mean((0, 1)), *bounds(m, iv)], atol=ABS, rtol=1e-12, err_msg=what
        )
    assert set(out["interval"]) == {label(iv)}
    assert "deseasonalised_mean" not in out  # the secular trend is counterfactual_by_period's f(t)


def period_mean(fit, x, cells):
    """Within each draw, the patient-weighted mean outcome over each period's ``cells`` (boolean per
    cell): probability, count per exposure unit (expected count / exposure), mean y, or the
    geometric mean exp(weighted mean of E log y) for lognormal. NaN for a period without cells."""
    d, fam = fit.design, fit.spec.family
    period = d.cells["period"].to_numpy()
    out = np.full((*x.shape[:-1], len(d.periods)), np.nan)
    for k, t in enumerate(d.periods):
        c = (period == t) & cells
        if not c.any():
            continue
        n = d.n[c]
        if fam == "lognormal":
            out[..., k] = np.exp(((d.y_center + d.y_scale * x[..., c]) * n).sum(-1) / n.sum())
        elif fam in ("poisson", "negative_binomial"):
            out[..., k] = (mean_outcome(fit, x)[..., c] * n).sum(-1) / d.y["exposure"][c].sum()
        else:
            out[..., k] = (mean_outcome(fit, x)[..., c] * n).sum(-1) / n.sum()
    return out


def test_counterfactual_by_period(fitted):
    """Per period: within each draw the patient-weighted mean over the period's cells (all, or
    the treated ones) of the expected outcome as assigned, without and with the intervention,
    then the interval over draws; and f(t) alone: f(t) - f(1) and g^-1(mu + f(t) - mean f)."""
    name, fit = fitted
    iv, d, fam = interval(name), fit.design, fit.spec.family
    out = counterfactual_by_period(fit, iv)
    c = d.cells
    np.testing.assert_array_equal(out["period"], sorted(c["period"].unique()))
    np.testing.assert_array_equal(out["n"], c.groupby("period")["n"].sum().to_numpy())
    treated = (c["treated"] == 1).to_numpy()
    np.testing.assert_array_equal(
        out["n_treated"], c[treated].groupby("period")["n"].sum().reindex(out["period"]).fillna(0)
    )
    eta, off, on = off_on(fit)
    everyone = np.ones(len(c), bool)
    series = {"actual": (eta, everyone), "without": (off, everyone), "with": (on, everyone)}
    series |= {"actual_treated": (eta, treated), "without_treated": (off, treated)}
    post = fit.idata["posterior"]
    trend = draws(fit, "trend") if "trend" in post else np.zeros((*draws(fit, "mu").shape, len(out)))
    x = draws(fit, "mu")[..., None] + trend - trend.mean(-1, keepdims=True)
    base = {
        "bernoulli": expit(x),
        "binomial": expit(x),
        "poisson": np.exp(x),
        "negative_binomial": np.exp(x),
        "gaussian": d.y_center + d.y_scale * x,
        "lognormal": np.exp(d.y_center + d.y_scale * x),
    }[fam]
    for what, m in [
        *((k, period_mean(fit, x_, cells)) for k, (x_, cells) in series.items()),
        ("trend_link", trend * y_scale(fit)),
        ("trend", base),
    ]:
        cols = [f"{what}_mean", f"{what}_lower", f"{what}_upper"]
        ok = np.isfinite(m).all((0, 1))
        assert ok.any(), what
        np.testing.assert_allclose(
            out.loc[ok, cols].to_numpy().T,
            [m[..., ok].mean((0, 1)), *bounds(m[..., ok], iv)],
            atol=ABS,
            rtol=1e-12,
            err_msg=what,
        )
        assert out.loc[~ok, cols].isna().all().all(), what
    assert not out["without_treated_mean"].notna().all()  # a period with no treated cells
    assert set(out["interval"]) == {label(iv)}
