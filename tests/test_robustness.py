"""The robustness battery (qialign.robustness): which variants a design gets, the fast
fixed-effects estimator and the exact permutation p-value, the verdict rule, and power-scaling
prior sensitivity on real fits (a deliberately tight prior on theta is flagged, the default not)."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

from models_sim import simulate
from qialign.config import load_trial_config
from qialign.errors import QialignError
from qialign.inference.fit import fit_model
from qialign.models.spec import simulated_spec
from qialign.robustness.battery import battery, battery_outcomes, variant_models, without_transition
from qialign.robustness.fast_estimator import FixedEffects, cluster_period_summaries, start_periods
from qialign.robustness.permutation import distinct_assignments, permutation_test
from qialign.robustness.placebo import placebo_in_space, placebo_in_time
from qialign.robustness.power_scaling import prior_sensitivity
from qialign.robustness.verdict import compare, disagreement, side_of_zero, verdict

ROOT = Path(__file__).resolve().parents[1]


def test_the_shipped_stepped_wedge_gets_every_aspect_and_the_its_only_what_one_series_identifies():
    hs = load_trial_config(ROOT / "config/trials/headsup_synthetic.yaml")
    assert battery_outcomes(hs) == ["excess_los"]
    variants, skipped = battery(hs, "excess_los")
    assert [v.id for v in variants] == [
        "hh_trend_linear", "hh_trend_rw1", "hh_exposure_eti", "hh_exposure_ramp", "hh_cp_ar1",
        "hh_rte_on", "hh_transition_excluded", "hh_covariates_unadjusted",
    ]  # fmt: skip
    assert skipped == []
    models = {m["id"]: m for m in variant_models(hs, "excess_los")}
    assert models["hh_exposure_eti"]["exposure"] == "eti" and models["hh_exposure_eti"]["trend"] == "auto"
    assert models["hh_covariates_unadjusted"]["covariates"] is False
    assert variant_models(hs, "los_days") == []  # not a battery outcome

    its = load_trial_config(ROOT / "config/trials/sicily_its.yaml")
    variants, skipped = battery(its, "aces")
    assert [v.id for v in variants] == ["its_trend_spline", "its_exposure_ramp", "its_transition_excluded"]
    assert {(s.aspect, s.alternative) for s in skipped} == {
        ("trend", "period"), ("trend", "rw1"), ("exposure", "eti"), ("cluster_period", "exchangeable"),
        ("random_treatment", "on"), ("covariates", "unadjusted"),
    }  # fmt: skip


def test_without_transition_drops_exactly_each_clusters_first_treated_period():
    cells = pd.DataFrame(
        {"cluster": list("aaaabbbb"), "period": [1, 2, 3, 4] * 2, "treated": [0, 1, 1, 1, 0, 0, 1, 1],
         "exposure_time": [0, 1, 2, 3, 0, 0, 1, 2]}
    )  # fmt: skip
    kept = without_transition(cells)
    assert list(zip(kept["cluster"], kept["period"], strict=True)) == [
        ("a", 1),
        ("a", 3),
        ("a", 4),
        ("b", 1),
        ("b", 2),
        ("b", 4),
    ]


def _tiny_cells(seed: int = 1, effect: float = 0.5, starts=None) -> pd.DataFrame:
    """4 clusters x 5 periods, one cluster starting per period (24 distinct assignments)."""
    rng = np.random.default_rng(seed)
    starts = starts or {"a": 2, "b": 3, "c": 4, "d": 5}
    rows = []
    for c, s in starts.items():
        for t in range(1, 6):
            tr, n = int(t >= s), 150 + 10 * t
            p = 1 / (1 + np.exp(-(-1 + 0.1 * t + effect * tr)))
            rows.append({"cluster": c, "period": t, "treated": tr, "exposure_time": (t - s + 1) * tr,
                         "n": n, "events": int(rng.binomial(n, p))})  # fmt: skip
    return pd.DataFrame(rows)


def _wls(cp: pd.DataFrame, x: np.ndarray) -> float:
    """statsmodels WLS of the summaries on cluster and period dummies and x: x's coefficient."""
    D = pd.get_dummies(cp[["cluster"]].astype(str)).astype(float)
    P = pd.get_dummies(cp["period"].astype(str), drop_first=True).astype(float)
    X = np.column_stack([x, D, P])
    return float(sm.WLS(cp["y"], X, weights=cp["w"]).fit().params.iloc[0])


def test_fixed_effects_estimate_equals_statsmodels_wls_and_the_exact_p_value_enumerates():
    cells = _tiny_cells()
    cp = cluster_period_summaries(cells, "bernoulli")
    first = cells.iloc[0]  # the empirical logit of the first cell, by hand
    assert cp["y"].iloc[0] == pytest.approx(
        np.log((first.events + 0.5) / (first.n - first.events + 0.5)), abs=1e-12
    )
    starts = start_periods(cp)
    fe = FixedEffects.of(cp)
    clusters = starts.index.to_numpy()
    # by brute force: every ordering of the 4 distinct starts, statsmodels' WLS each time
    brute = []
    for perm in itertools.permutations(starts.to_numpy()):
        x = fe.treatment(np.array(perm), clusters)[0]
        brute.append(_wls(cp, x))
        assert fe.estimate(x)[0] == pytest.approx(brute[-1], abs=1e-10)
    observed = _wls(cp, cp["treated"].to_numpy(float))
    p_exact = np.mean(np.abs(brute) >= abs(observed) - 1e-12)
    result = permutation_test(fe, starts.to_numpy(), clusters, limit=999, seed=1, level=0.95)
    assert distinct_assignments(starts.to_numpy()) == 24
    assert result.exact and result.assignments == 24
    assert result.estimate == pytest.approx(observed, abs=1e-10)
    assert result.p_value == pytest.approx(p_exact, abs=1e-12)
    assert result.lower < result.estimate < result.upper
    # fewer allowed re-assignments than exist: a seeded Monte Carlo sample, the observed first
    mc = permutation_test(fe, starts.to_numpy(), clusters, limit=10, seed=1, level=0.95)
    assert not mc.exact and mc.assignments == 11 and mc.p_value >= 1 / 11


def test_test_inversion_interval_is_the_set_of_effects_the_test_keeps():
    """At the interval's ends the permutation p-value of H0: theta = end crosses 1 - level."""
    cells = _tiny_cells(seed=3, starts={"a": 2, "b": 2, "c": 3, "d": 3, "e": 4, "f": 4, "g": 5, "h": 5})
    cp = cluster_period_summaries(cells, "bernoulli")
    starts = start_periods(cp)
    fe = FixedEffects.of(cp)
    res = permutation_test(fe, starts.to_numpy(), starts.index.to_numpy(), limit=5000, seed=1, level=0.9)
    assert res.exact and res.assignments == distinct_assignments(starts.to_numpy()) == 2520

    def p_at(theta0: float) -> float:  # shift the summaries by theta0 X and test zero, directly
        y = cp["y"].to_numpy() - theta0 * cp["treated"].to_numpy()
        X = fe.treatment(np.vstack([starts.to_numpy(), *_others(starts.to_numpy())]), starts.index.to_numpy())
        T = fe.estimate(X, y=y)
        return float(np.mean(np.abs(T) >= abs(T[0]) - 1e-12))

    step = 0.01
    assert p_at(res.lower + step) > 0.1 and p_at(res.upper - step) > 0.1
    assert p_at(res.lower - step) <= 0.1 and p_at(res.upper + step) <= 0.1


def _others(starts: np.ndarray) -> list:
    seen = {tuple(starts)}
    out = []
    for perm in itertools.permutations(starts):
        if perm not in seen:
            seen.add(perm)
            out.append(np.array(perm))
    return out


def test_placebos_move_the_start_into_control_periods_and_treat_controls():
    cells = _tiny_cells(effect=1.0)
    cp = cluster_period_summaries(cells, "bernoulli")
    time = placebo_in_time(cp, shift=1, limit=999, seed=1, level=0.95)
    assert time.result is not None and time.result.exact
    # the fake start moved one period earlier on control periods only: b, c, d fake-treated in
    # their last control period; the estimate is the fixed-effects WLS of exactly that design
    control = cp[cp["treated"] == 0]
    fake = (control["period"] >= control["cluster"].map({"a": 1, "b": 2, "c": 3, "d": 4})).to_numpy(float)
    assert time.result.estimate == pytest.approx(_wls(control, fake), abs=1e-10)
    space = placebo_in_space(cp, limit=999, seed=1, level=0.95)
    assert space.result is None and "0 control cluster(s)" in space.reason
    cba = cluster_period_summaries(
        _tiny_cells(starts={"a": 3, "b": 3, "c": 99, "d": 99, "e": 99, "f": 99}), "bernoulli"
    )
    space = placebo_in_space(cba, limit=999, seed=1, level=0.95)
    assert space.result is not None and space.result.assignments == distinct_assignments(
        np.array([3, 3, np.inf, np.inf])
    )


def test_the_verdict_rule():
    assert side_of_zero(0.1, 0.5) == "above zero" and side_of_zero(-0.5, -0.1) == "below zero"
    assert side_of_zero(-0.1, 0.5) == "spans zero"
    primary = {"estimate": -0.4, "lower": -0.7, "upper": -0.1}
    assert disagreement(primary, {"estimate": -0.5, "lower": -0.8, "upper": -0.2}) == ""
    assert (
        disagreement(primary, {"estimate": -0.2, "lower": -0.6, "upper": 0.2})
        == "interval spans zero (primary: below zero)"
    )
    assert disagreement(primary, {"estimate": -0.8, "lower": -1.0, "upper": -0.6}).startswith(
        "estimate -0.8 outside"
    )
    rows = pd.DataFrame(
        [("hh", "primary", "treatment_effect", -0.4, -0.7, -0.1, True),
         ("hh_exposure_eti", "exposure", "treatment_effect", -0.9, -1.2, -0.75, True),
         ("hh_cp_ar1", "cluster_period", "treatment_effect", 0.2, -0.1, 0.5, False),
         ("hh_trend_linear", "trend", "treatment_effect", -0.45, -0.75, -0.15, True)],
        columns=["model", "aspect", "estimand", "estimate", "lower", "upper", "reliable"],
    )  # fmt: skip
    out = verdict(compare(rows))
    assert out["stable"] is False and out["depends_on"] == [
        "exposure"
    ]  # the unreliable AR(1) fit does not count
    assert "Not counted (failed diagnostics or not identified): hh_cp_ar1" in out["text"]
    assert verdict(compare(rows.iloc[[0, 3]]))["stable"] is True


SAMPLER = {"chains": 2, "draws": 300, "draws_min": 300, "tune": 300}  # fixed length


@pytest.mark.parametrize(("effect_sd", "sensitive"), [(0.02, True), (1.0, False)])
def test_power_scaling_flags_a_tight_prior_on_theta_and_not_the_default(effect_sd, sensitive):
    """Theta = 0.5 on 8 clusters x 5 periods: the posterior SD (~0.15) is far wider than a prior
    SD of 0.02, so the prior drives theta; with the default SD of 1 the data do."""
    cells, _, _, _ = simulate(
        "bernoulli", n_clusters=8, n_periods=5, n_per_cp=40, seed=4, treatment_effect=0.5
    )
    model = {"id": "m", "moderators": [], "priors": {"effect_sd": effect_sd}}
    spec = simulated_spec("bernoulli", model)
    fit = fit_model(cells, spec, sampler=SAMPLER, diagnostics={"retry": False}, seed=3)
    table = prior_sensitivity(fit.idata, threshold=0.05).set_index("parameter")
    row = table.loc["treatment_effect"]
    assert bool(row["prior"] >= 0.05) is sensitive, row
    assert row["diagnosis"].startswith("prior") is sensitive
    assert bool(row["reliable"]), row
    if not sensitive:  # the data drive theta under the default prior
        assert row["likelihood"] > 0.05, row


def test_an_unknown_battery_outcome_is_a_qialign_error_naming_the_key():
    cfg = load_trial_config(ROOT / "config/trials/headsup_synthetic.yaml")
    bad = {**cfg, "robustness": {**cfg["robustness"], "outcomes": ["nope"]}}
    with pytest.raises(QialignError, match=r"robustness.outcomes names nope, not an outcome"):
        battery_outcomes(bad)
    assert battery_outcomes({**cfg, "robustness": {**cfg["robustness"], "enabled": False}}) == []
