"""Parameter recovery, one model feature per test (slow: each fits one small simulated trial).

Each test simulates a trial with the project's simulator (truth from its truth dict), fits it
through the real steps (prepare -> alignment -> fit; 2 chains x 400 draws on cluster-period cells)
and asserts, per parameter, |posterior mean - truth| < 3 posterior SD and a 90% interval width
that the prior alone would fail (the prior-only width is computed from the priors the test sets).
Calibration over many replicates is left to the coverage tests.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from sim_pipeline import fit_through_steps, posterior, summary, write_trial

pytestmark = pytest.mark.slow

PROB = 0.9
Z = stats.norm.ppf(0.5 + PROB / 2)  # 1.645
PRIORS = {"effect_sd": 1.0, "interaction_sd": 0.5, "trend_sd": 1.0, "sd_site": 0.5, "sd_treatment": 0.5}
SAMPLER = {"chains": 2, "draws": 400, "tune": 400}
RNG = np.random.default_rng(2026)  # Monte Carlo of prior-only widths (independent of the fits)


def normal_width(sd: float) -> float:
    """90% width of N(0, sd^2)."""
    return 2 * Z * sd


def halfnormal_width(sd: float) -> float:
    """90% equal-tailed width of |N(0, sd^2)|."""
    return sd * (stats.norm.ppf(0.5 + (1 + PROB) / 4) - stats.norm.ppf(0.5 + (1 - PROB) / 4))


def mc_width(draws: np.ndarray) -> float:
    lo, hi = np.quantile(draws, [(1 - PROB) / 2, (1 + PROB) / 2])
    return float(hi - lo)


def simulation(outcome: dict, **spec) -> dict:
    """A stepped wedge of 8 wards (one start a period from period 2), 9 periods, ~200 patients a
    ward-month, no survey, no covariate effects, ward and ward-month SDs 0.2 and 0.15 (smaller
    ones leave their SDs in a funnel that 400 draws do not mix); ``outcome`` and ``spec`` override."""
    y = {"family": "bernoulli", "baseline": 0.3, "sd_site": 0.0, "sd_cluster": 0.2}
    y |= {"sd_cluster_period": 0.15, "sd_treatment": 0.0, "betas": {}, **outcome}
    return {
        "design": "stepped_wedge",
        "periods": 9,
        "clusters_per_site": [8],
        "schedule": {"baseline": 1, "every": 1, "per_step": 1},
        "patients": {"per_period": 200},
        "survey": {"enabled": False},
        "fidelity": {"enabled": False},
        "outcomes": {"y": y},
        **spec,
    }


def fit(work, sim, model, seed, family="bernoulli", priors=PRIORS, sampler=SAMPLER, **outcome):
    """Simulate ``sim``, fit model ``main`` (``model`` keys, ``priors``) through the steps; return the
    posterior and the outcome's truth."""
    trial = {
        "id": "recovery",
        "design": sim["design"],
        "outcomes": {"y": {"family": family, **outcome}},
        "alignment": {"source": "none"},
        "models": [{"id": "main", "priors": priors, **model}],
        "sampler": sampler,
        "interval": {"prob": PROB},
        "diagnostics": {"retry": False},
    }
    config, truth = write_trial(work, sim, seed, trial)
    _, record = fit_through_steps(config, "y", "main", work)
    assert record.r_hat_max < 1.05, record
    return posterior(work, "y", "main"), truth["outcomes"]["y"]


def check(name: str, table, truth: dict, prior_width: float | dict) -> None:
    """Per row: |mean - truth| < 3 SD and width < the bound (a fraction of the prior-only width)."""
    for key, row in table.iterrows():
        bound = prior_width[key] if isinstance(prior_width, dict) else prior_width
        t = truth[key]
        print(
            f"{name}[{key}]: truth {t:.3f} mean {row['mean']:.3f} sd {row['sd']:.3f} "
            f"width {row['width']:.3f} (asserted bound {bound:.3f})"
        )
        assert abs(row["mean"] - t) < 3 * row["sd"], (name, key, t, row.to_dict())
        assert row["width"] < bound, (name, key, bound, row.to_dict())


def test_fidelity_interaction_recovered(tmp_path):
    """kappa (effect change per SD of delivery fidelity, F standardised over treated cells as both
    simulator and model do) is recovered to well inside a quarter of its prior width."""
    sim = simulation({"treatment_effect": -0.4, "fidelity_interaction": 0.3})
    sim["fidelity"] = {"enabled": True}
    post, truth = fit(tmp_path, sim, {"moderators": ["fidelity"]}, seed=11)
    prior = normal_width(PRIORS["interaction_sd"]) / 4
    check("fidelity_interaction", summary(post["fidelity_interaction"]), {"value": 0.3}, prior)
    check("treatment_effect", summary(post["treatment_effect"]), {"value": -0.4}, prior)
    assert truth["fidelity_interaction"] == 0.3


def test_random_treatment_effects_recovered(tmp_path):
    """Cluster-specific effects theta + delta_j and their SD: each ward's effect within 3 SD at a
    quarter of the prior width, sd_treatment within 3 SD at under half its prior width. 1,000
    draws: theta and the (non-centred, not sum-to-zero) delta_j share a ridge, and 400 draws
    gave theta a bulk ESS under 20 (R-hat 1.10) at 800 patients a ward-month."""
    y = {"treatment_effect": -0.3, "sd_treatment": 0.4, "sd_cluster_period": 0.1}
    sim = simulation(y, clusters_per_site=[16], periods=17, patients={"per_period": 400})
    sampler = {"chains": 2, "draws": 1000, "tune": 1000}
    post, truth = fit(tmp_path, sim, {"random_treatment": True}, seed=12, sampler=sampler)
    # prior of theta + delta_j: N(0, 1) + |N(0, 0.5^2)| N(0, 1)
    n = 200_000
    effect_prior = RNG.normal(0, PRIORS["effect_sd"], n)
    effect_prior += np.abs(RNG.normal(0, PRIORS["sd_treatment"], n)) * RNG.normal(0, 1, n)
    effect_bound = mc_width(effect_prior) / 4
    check("cluster_effect", summary(post["cluster_effect"]), truth["cluster_effects"], effect_bound)
    sd_prior = halfnormal_width(PRIORS["sd_treatment"]) / 2
    check("sd_treatment", summary(post["sd_treatment"]), {"value": truth["sd_treatment"]}, sd_prior)


def test_eti_recovers_a_ramp_shape(tmp_path):
    """exposure: eti fitted to a ramp (effect theta min(e / 3, 1)): each theta_e within 3 SD at
    under half the N(0, 1) prior width, and the estimand (their mean) with it. A controlled
    before-after design (6 of 12 wards start at period 3): in a stepped wedge the exposure time
    and the calendar trend are nearly collinear once cluster intercepts absorb the start period,
    and a small sampler does not mix."""
    theta, ramp = -0.6, 3
    sim = simulation({"treatment_effect": theta, "exposure_shape": "ramp", "ramp_length": ramp})
    sim |= {"design": "controlled_before_after", "schedule": {"start": 3, "controls": 6}}
    sim["clusters_per_site"] = [12]
    post, _ = fit(tmp_path, sim, {"exposure": "eti"}, seed=13)
    table = summary(post["theta_e"])
    truth = {e: theta * min(int(e) / ramp, 1.0) for e in table.index}
    check("theta_e", table, truth, normal_width(PRIORS["effect_sd"]) / 2)
    mean_truth = {"value": float(np.mean(list(truth.values())))}
    check("treatment_effect", summary(post["treatment_effect"]), mean_truth, normal_width(1.0) / 4)


def test_ramp_recovers_the_full_effect(tmp_path):
    """exposure: ramp with the simulator's ramp length: theta (the full effect) within 3 SD at a
    quarter of its prior width."""
    theta = -0.5
    sim = simulation({"treatment_effect": theta, "exposure_shape": "ramp", "ramp_length": 3})
    post, _ = fit(tmp_path, sim, {"exposure": "ramp", "ramp_periods": 3}, seed=14)
    check("treatment_effect", summary(post["treatment_effect"]), {"value": theta}, normal_width(1.0) / 4)


def test_spline_trend_recovered(tmp_path):
    """trend: spline (df 4, cubic B-splines without interior knots, so any cubic is in its span):
    a cubic secular trend is recovered per period. The prior-only width of f(T) - f(1) is the
    last coefficient's, 2 x 1.645 x trend_sd = 3.29 (B-splines are 1 at their end knot); every
    period is asserted under a quarter of it."""
    t = np.arange(9) / 8.0
    trend = 0.6 * t - 1.2 * t**2 + 0.9 * t**3  # f(1) = 0
    sim = simulation({"treatment_effect": -0.4, "trend": {"type": "vector", "values": trend.tolist()}})
    post, truth = fit(tmp_path, sim, {"trend": "spline", "spline_df": 4}, seed=15)
    table = summary(post["trend"]).iloc[1:]  # period 1 is 0 by definition
    values = dict(zip(summary(post["trend"]).index, truth["trend"], strict=True))
    check("trend", table, values, normal_width(PRIORS["trend_sd"]) / 4)
    check("treatment_effect", summary(post["treatment_effect"]), {"value": -0.4}, normal_width(1.0) / 4)


def test_rw1_trend_recovered(tmp_path):
    """trend: rw1 on a simulated random walk (increments N(0, 0.15^2)): each period's trend
    f(t) - f(1) within 3 SD and under a quarter of its prior-only width (sqrt(t - 1) x the width
    of |N(0, 1)| N(0, 1), by Monte Carlo); sd_trend within 3 SD under half its prior width."""
    walk = np.r_[0.0, np.cumsum(np.random.default_rng(7).normal(0, 0.15, 8))]
    sim = simulation({"treatment_effect": -0.4, "trend": {"type": "vector", "values": walk.tolist()}})
    post, truth = fit(tmp_path, sim, {"trend": "rw1"}, seed=16)
    table = summary(post["trend"])
    values = dict(zip(table.index, truth["trend"], strict=True))
    step = np.abs(RNG.normal(0, PRIORS["trend_sd"], 200_000)) * RNG.normal(0, 1, 200_000)
    prior = {p: np.sqrt(i) * mc_width(step) / 4 for i, p in enumerate(table.index)}
    check("trend", table.iloc[1:], values, prior)
    check("sd_trend", summary(post["sd_trend"]), {"value": 0.15}, halfnormal_width(1.0) / 2)


def test_ar1_cluster_period_recovered(tmp_path):
    """cluster_period: ar1 on ward-month counts (about 300 a cell, so the AR(1) effects dominate
    the Poisson noise): rho within 3 SD at under half the Beta(2, 2) prior width (0.73), and
    sd_cluster_period within 3 SD under half its prior width."""
    rho, sd = 0.6, 0.3
    y = {"family": "poisson", "level": "cluster_period", "baseline": 50.0, "per": 1000}
    y |= {"treatment_effect": -0.3, "cluster_period_structure": "ar1", "rho": rho}
    y |= {"sd_cluster_period": sd}
    sim = simulation(y, clusters_per_site=[12], periods=16)
    sim["patients"] = {"per_period": 1000}
    priors = {**PRIORS, "sd_cluster_period": 0.5}
    model = {"cluster_period": "ar1"}
    post, truth = fit(tmp_path, sim, model, seed=17, family="poisson", priors=priors, exposure="bed_days")
    rho_prior = stats.beta(2, 2).ppf(0.95) - stats.beta(2, 2).ppf(0.05)  # 0.73
    check("rho", summary(post["rho"]), {"value": truth["rho"]}, rho_prior / 2)
    sd_prior = halfnormal_width(priors["sd_cluster_period"]) / 2
    check("sd_cluster_period", summary(post["sd_cluster_period"]), {"value": sd}, sd_prior)


def test_site_effects_recovered(tmp_path):
    """Four sites of three wards: each site effect (sum-to-zero, so the truth is u_k - mean u)
    within 3 SD at under a third of its prior-only width (|N(0, 0.5^2)| x N(0, 3/4), Monte
    Carlo), and sd_site within 3 SD (four sites cannot narrow it much; width not asserted)."""
    y = {"treatment_effect": -0.4, "sd_site": 0.4, "sd_cluster": 0.1}
    sim = simulation(y, clusters_per_site=[3, 3, 3, 3])
    sim["periods"], sim["schedule"] = 7, {"baseline": 1, "every": 1, "per_step": 2}
    post, truth = fit(tmp_path, sim, {"site_effect": True}, seed=18)
    u = post["sd_site"] * post["z_site"]
    centred = np.array(list(truth["site_effects"].values()))
    centred = dict(zip(truth["site_effects"], centred - centred.mean(), strict=True))
    n, k = 200_000, 4
    prior = np.abs(RNG.normal(0, PRIORS["sd_site"], n)) * RNG.normal(0, np.sqrt((k - 1) / k), n)
    check("site_effect", summary(u), centred, mc_width(prior) / 3)
    check("sd_site", summary(post["sd_site"]), {"value": truth["sd_site"]}, np.inf)
