"""Interrupted time series through the real pipeline, on the tutorial's public data (Sicily).

Lopez Bernal J, Cummins S, Gasparrini A. Interrupted time series regression for the evaluation of
public health interventions: a tutorial. Int J Epidemiol 2017;46:348-355. Their quasi-Poisson
model with two harmonics gives rate ratio 0.885 (95% CI 0.839 to 0.933) for the smoking ban
(tests/test_its_frequentist.py reproduces it); here the shipped trial config
config/trials/sicily_its.yaml goes through prepare, the cross-check step and the Bayesian fit.
"""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from qialign.config import load_trial_config
from qialign.inference.fit import fit_model
from qialign.models.design import build_design
from qialign.models.estimands import estimates
from qialign.models.spec import ModelSpec, simulated_spec
from qialign.steps.crosscheck import crosscheck_step
from qialign.steps.prepare import prepare_outcome

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "config" / "trials" / "sicily_its.yaml"
PUBLISHED = (0.885, 0.839, 0.933)  # level change, rate ratio and 95% CI, quasi-Poisson + 2 harmonics


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    out = tmp_path_factory.mktemp("sicily") / "aces"
    import os

    cwd = os.getcwd()
    os.chdir(ROOT)  # the config's data paths are relative to the project
    try:
        prepare_outcome(CONFIG, "aces", out)
    finally:
        os.chdir(cwd)
    return out


def test_segmented_design_terms():
    cfg = load_trial_config(CONFIG)
    spec = ModelSpec.from_config(cfg["models"][1], "aces", cfg["outcomes"]["aces"], cfg)
    cells = pd.DataFrame(
        {"cluster": "s", "period": np.arange(1, 7), "treated": [0, 0, 0, 1, 1, 1]}
        | {"exposure_time": [0, 0, 0, 1, 2, 3], "n": 1, "count": 5.0, "exposure": 100.0}
    )
    d = build_design(cells, spec)
    np.testing.assert_array_equal(d.slope, [0, 0, 0, 0, 1, 2])  # periods since the start
    angle = 2 * np.pi * np.arange(1, 7) / 12
    np.testing.assert_allclose(d.season[:, 0], np.sin(angle))  # sin1
    np.testing.assert_allclose(d.season[:, 3], np.cos(2 * angle))  # cos2
    assert d.season.shape == (6, 4)


def test_crosscheck_step_gives_the_published_rate_ratio(prepared, tmp_path):
    import os

    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        table = crosscheck_step(CONFIG, "aces", prepared, tmp_path / "scores.csv", tmp_path / "cc.csv")
    finally:
        os.chdir(cwd)
    row = table.set_index(["method", "estimand"]).loc[("its_quasipoisson", "treatment_effect_natural")]
    link = table.set_index(["method", "estimand"]).loc[("its_quasipoisson", "treatment_effect")]
    # the published interval is Wald (normal); the step's is t on n - p = 59 - 7 df
    wald = np.exp(link["estimate"] + np.array([-1, 1]) * stats.norm.ppf(0.975) * link["se"])
    assert (round(row["estimate"], 3), *np.round(wald, 3)) == PUBLISHED
    assert row["df"] == link["df"] == 52
    t_ci = np.exp(link["estimate"] + np.array([-1, 1]) * stats.t.ppf(0.975, 52) * link["se"])
    np.testing.assert_allclose([row["lower"], row["upper"]], t_ci, rtol=1e-12)
    nw = table.set_index(["method", "estimand"]).loc[
        ("its_quasipoisson_newey_west", "treatment_effect_natural")
    ]
    assert nw["estimate"] == pytest.approx(row["estimate"], rel=1e-12)
    assert nw["upper"] - nw["lower"] < row["upper"] - row["lower"]  # lag-3 Newey-West: narrower here


def test_bayesian_its_estimate_inside_the_published_interval(prepared):
    """Negative binomial, linear pre-trend, 2 harmonics, AR(1): posterior mean RR in (0.839, 0.933)."""
    cfg = load_trial_config(CONFIG)
    spec = ModelSpec.from_config(cfg["models"][0], "aces", cfg["outcomes"]["aces"], cfg)
    cells = pd.read_parquet(prepared / "cells.parquet")
    fit = fit_model(cells, spec, sampler={"chains": 2, "draws": 300, "tune": 400}, seed=3)
    est = estimates(fit).set_index("estimand")
    rr = est.loc["treatment_effect_natural"]
    print(f"\nBayesian ITS rate ratio {rr['estimate']:.3f} ({rr['lower']:.3f} to {rr['upper']:.3f})")
    assert PUBLISHED[1] < rr["estimate"] < PUBLISHED[2]
    assert rr["lower"] < PUBLISHED[0] < rr["upper"]
    assert "icc" not in est.index  # one series: no between-cluster variance to report
    # the secular trend alone, deseasonalised: exp(mu + b t) per person-month, geometric over months
    from qialign.models.estimands import counterfactual_by_period

    by_period = counterfactual_by_period(fit)
    np.testing.assert_allclose(np.diff(by_period["trend_link_mean"], 2), 0, atol=1e-12)  # linear f(t)
    rate = by_period["trend_mean"].to_numpy()  # already a rate per exposure unit (person-month)
    steps = rate[1:] / rate[:-1]
    np.testing.assert_allclose(steps, steps[0], rtol=1e-3)  # E exp(): geometric up to convexity
    assert 1.0 < steps[0] ** 12 < 1.15  # the tutorial's pre-ban trend: RR 1.067 per year


def test_controlled_its_cross_check_recovers_the_difference_in_change():
    """Two treated and two control series (never start), log-rate level change -0.2 at period 21."""
    from qialign.frequentist.its import its_cross_check

    estimates = []
    for seed in (1, 2, 3):
        rng = np.random.default_rng(seed)
        rows = []
        for c, series in (("t1", 1), ("t2", 1), ("c1", 0), ("c2", 0)):
            for t in range(1, 41):
                tr = int(series and t >= 21)
                mu = 20000 * np.exp(-4 + 0.01 * t - 0.2 * tr + 0.1 * series)
                rows.append({"cluster": c, "period": t, "treated": tr, "y": rng.poisson(mu), "exposure": 2e4})
        table = its_cross_check(pd.DataFrame(rows), "poisson").set_index(["method", "estimand"])
        row = table.loc[("its_quasipoisson", "treatment_effect")]
        assert row["lower"] < -0.2 < row["upper"]
        assert "treated vs control" in row["note"]
        estimates.append(row["estimate"])
    assert abs(np.mean(estimates) + 0.2) < 0.03


def test_bayesian_controlled_its_recovers_level_and_slope_change():
    """Controlled ITS in the same model family: two treated and two control series (never start),
    categorical period effects absorb the shared trend; level change -0.2, slope change -0.01."""
    rng = np.random.default_rng(4)
    rows = []
    for j, (c, series) in enumerate((("t1", 1), ("t2", 1), ("c1", 0), ("c2", 0))):
        for t in range(1, 31):
            tr = int(series and t >= 16)
            e = t - 15 if tr else 0
            log_mu = np.log(5000) - 4 + 0.3 * np.sin(t / 3) + 0.05 * j - 0.2 * tr - 0.01 * max(e - 1, 0)
            rows.append(
                {"cluster": c, "period": t, "treated": tr, "exposure_time": e, "n": 1}
                | {"count": rng.poisson(np.exp(log_mu)), "exposure": 5000.0}
            )
    cells = pd.DataFrame(rows)
    model = {"id": "cits", "slope_change": True, "cluster_period": "none", "site_effect": False}
    spec = simulated_spec("poisson", {**model, "moderators": []})
    fit = fit_model(cells, spec, sampler={"chains": 2, "draws": 400, "tune": 400}, seed=1)
    est = estimates(fit, {"prob": 0.95}).set_index("estimand")
    for name, truth in (("treatment_effect", -0.2), ("slope_change", -0.01)):
        assert est.loc[name, "lower"] < truth < est.loc[name, "upper"], (name, est.loc[name])
    assert est.loc["slope_change", "upper"] - est.loc["slope_change", "lower"] < 0.03
