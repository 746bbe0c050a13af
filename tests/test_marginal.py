"""Population-averaged effects for a new cluster (qialign.models.marginal) and what each row is.

The exact equality with a direct numpy computation from the draws is in test_estimands_exact.py
(every family); here: the quadrature against adaptive integration, the row labels, which
frequentist rows are comparable with which Bayesian row, and (slow) recovery of the true marginal
odds ratio by the Bayesian fit and the GEE on a simulated trial with large cluster effects.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import integrate, stats
from scipy.special import expit

from estimand_fits import cached_fit
from qialign.frequentist import cross_check
from qialign.inference.fit import fit_model
from qialign.models.estimands import estimates
from qialign.models.marginal import expected_outcomes, fixed_predictor, random_sds
from qialign.models.spec import simulated_spec
from qialign.results import comparable_estimand


def _normal_mean(g, tau: float) -> float:
    """E[g(tau Z)], Z ~ N(0, 1), by adaptive quadrature (independent of the Gauss-Hermite nodes)."""
    if tau == 0:
        return float(g(0.0))
    value, _ = integrate.quad(lambda z: g(tau * z) * stats.norm.pdf(z), -12, 12, epsabs=1e-13, epsrel=1e-12)
    return value


def test_quadrature_equals_adaptive_integration_on_real_draws():
    """A new cluster's risks from the binomial fit equal the integral computed adaptively, to 1e-9,
    for two draws: the 41 Gauss-Hermite nodes are enough at the fitted random-effect SDs."""
    fit = cached_fit("binomial")
    p0, p1 = expected_outcomes(fit)
    x, (tau0, tau1) = fixed_predictor(fit), random_sds(fit)
    theta = np.asarray(fit.idata["posterior"]["treatment_effect"])
    n = fit.design.n
    for c, s in ((0, 0), (1, 63)):
        xs, cell_x = np.unique(x[c, s], return_inverse=True)  # cells of one period share x
        for p, shift, tau in ((p0, 0.0, tau0), (p1, theta[c, s], tau1)):
            direct = sum(
                n_x * _normal_mean(lambda b, xc=xc + shift: expit(xc + b), tau[c, s])
                for xc, n_x in zip(xs, np.bincount(cell_x, weights=n), strict=True)
            )
            assert p[c, s] == pytest.approx(direct / n.sum(), abs=1e-9)


def test_every_row_says_what_it_is():
    est = estimates(cached_fit("binomial")).set_index("estimand")
    kind = dict(zip(est.index, zip(est["conditioning"], est["population"], strict=True), strict=True))
    assert kind["treatment_effect_natural"] == kind["treatment_effect"] == ("conditional", "new cluster")
    assert kind["marginal_difference"] == ("conditional", "in-sample")
    for name in ("pa_difference", "pa_ratio", "pa_odds_ratio"):
        assert kind[name] == ("population-averaged", "new cluster")
    for name in ("sd_cluster", "sd_cluster_period", "icc", "cac"):
        assert kind[name] == ("", "")
    assert est.loc["pa_ratio", "scale"] == "risk ratio" and est.loc["pa_odds_ratio", "scale"] == "odds ratio"


def test_the_population_averaged_odds_ratio_is_nearer_one_in_every_draw():
    """Without a random treatment effect, integrating over N(0, tau^2) attenuates the log odds ratio
    (Zeger, Liang & Albert 1988): |log OR_pa| <= |theta| draw by draw."""
    fit = cached_fit("binomial")
    p0, p1 = expected_outcomes(fit)
    log_or = np.log(p1 / (1 - p1)) - np.log(p0 / (1 - p0))
    theta = np.asarray(fit.idata["posterior"]["treatment_effect"])
    assert (np.abs(log_or) <= np.abs(theta) + 1e-12).all()
    assert (np.sign(log_or) == np.sign(theta)).all()


def test_which_frequentist_row_estimates_which_bayesian_row():
    gee = "gee_nested_exchangeable_md"
    assert comparable_estimand(gee, "treatment_effect_natural", "odds ratio") == "pa_odds_ratio"
    assert comparable_estimand(gee, "treatment_effect_natural", "rate ratio") == "pa_ratio"
    assert comparable_estimand("its_quasipoisson", "treatment_effect_natural", "rate ratio") == "pa_ratio"
    # identity link: conditional and population-averaged contrasts coincide
    assert comparable_estimand(gee, "treatment_effect", "mean") == "treatment_effect"
    assert comparable_estimand(gee, "treatment_effect_natural", "ratio of geometric means") == (
        "treatment_effect_natural"
    )
    # a GEE log odds ratio or interaction is not the conditional one, and no Bayesian row is it
    assert comparable_estimand(gee, "treatment_effect", "log-odds") == ""
    assert comparable_estimand(gee, "alignment_interaction", "log-rate") == ""
    assert comparable_estimand("mixedlm", "alignment_interaction", "mean") == "alignment_interaction"


#: a stepped wedge with large cluster effects: the conditional and marginal odds ratios differ by
#: about 0.25 on the log scale, five times the standard error of either
TRUTH = dict(mu=-1.0, theta=-1.0, sd_cluster=1.5, sd_cp=0.2, clusters=30, periods=7, m=200)


def _simulate(seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Binomial cluster-period cells (the fit's layout) and the true period effects f(t)."""
    t = TRUTH
    rng = np.random.default_rng(seed)
    start = 2 + np.arange(t["clusters"]) * (t["periods"] - 1) // t["clusters"]
    trend = 0.1 * np.arange(t["periods"])
    rows = []
    for j in range(t["clusters"]):
        v = rng.normal(0, t["sd_cluster"])
        for p in range(1, t["periods"] + 1):
            x = int(p >= start[j])
            eta = t["mu"] + trend[p - 1] + x * t["theta"] + v + rng.normal(0, t["sd_cp"])
            events = rng.binomial(t["m"], expit(eta))
            rows.append((f"c{j:02d}", "s1", p, x, p - start[j] + 1 if x else 0, "all", t["m"], events))
    cols = ["cluster", "site", "period", "treated", "exposure_time", "age", "n", "events"]
    return pd.DataFrame(rows, columns=cols), trend


def _true_marginal_odds_ratio(trend: np.ndarray) -> float:
    """[P1 / (1 - P1)] / [P0 / (1 - P0)] with P averaged over the periods (equal n) of the
    integral of expit(mu + f(t) [+ theta] + b) over b ~ N(0, sd_cluster^2 + sd_cp^2)."""
    t = TRUTH
    tau = np.hypot(t["sd_cluster"], t["sd_cp"])
    p0, p1 = (
        np.mean([_normal_mean(lambda b, f=f + shift: expit(t["mu"] + f + b), tau) for f in trend])
        for shift in (0.0, t["theta"])
    )
    return p1 / (1 - p1) * (1 - p0) / p0


@pytest.mark.slow
def test_population_averaged_odds_ratio_recovers_the_marginal_truth_like_the_gee():
    """Proves the population-averaged OR is the GEE's quantity and not exp(theta): on a simulated
    stepped wedge with known SDs, the Bayesian pa_odds_ratio and the GEE's odds ratio agree within
    their intervals and both cover the true marginal OR (numerical integration of the simulator's
    truth); the conditional OR covers exp(theta) and misses the marginal truth, further from it."""
    cells, trend = _simulate(seed=11)
    truth = _true_marginal_odds_ratio(trend)
    assert np.log(truth) == pytest.approx(-0.72, abs=0.02)  # vs theta = -1: far apart
    spec = simulated_spec("binomial", {"id": "m", "moderators": [], "site_effect": False})
    sampler = {"chains": 2, "draws": 500, "tune": 500}
    fit = fit_model(cells, spec, sampler=sampler, diagnostics={"retry": False}, seed=5)
    est = estimates(fit, {"prob": 0.9}).set_index("estimand")
    gee_cells = cells.rename(columns={"events": "y"})[["cluster", "period", "treated", "y", "n"]]
    gee = cross_check(gee_cells, "binomial", level="cell", methods=("gee_exchangeable_md",), interval=0.9)
    gee = gee.set_index("estimand").loc["treatment_effect_natural"]
    pa, cond = est.loc["pa_odds_ratio"], est.loc["treatment_effect_natural"]
    for r in (pa, gee):
        assert r["lower"] < truth < r["upper"], r
    assert pa["lower"] < gee["estimate"] < pa["upper"] and gee["lower"] < pa["estimate"] < gee["upper"]
    assert cond["lower"] < np.exp(TRUTH["theta"]) < cond["upper"]
    assert not cond["lower"] < truth < cond["upper"]
    assert abs(np.log(cond["estimate"] / truth)) > abs(np.log(pa["estimate"] / truth))
