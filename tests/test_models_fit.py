"""Small real fits: recovery per family and design, estimands, diagnostics/retry, io, LOO, PPC."""

import numpy as np
import pandas as pd
import pytest

from models_sim import simulate
from qialign.inference.fit import fit_model, with_predictions
from qialign.inference.posterior_io import load_posterior, save_posterior
from qialign.models.build import PREDICTIONS
from qialign.models.checks import posterior_predictive_check
from qialign.models.estimands import COLUMNS, cluster_effects, counterfactual, estimates
from qialign.models.loo import compare_loo
from qialign.models.spec import simulated_spec
from qialign.results import LOO_COLUMNS

FAST = {"chains": 2, "draws": 300, "tune": 400, "cores": 2}
LAX = {"r_hat_max": 1.05, "ess_bulk_min": 50, "ess_tail_min": 50, "divergences_max": 5, "retry": False}
FAMILIES = ["bernoulli", "binomial", "gaussian", "lognormal", "poisson", "negative_binomial"]


def spec_for(family, **model):
    return simulated_spec(family, {"id": "m", **model}, covariates=["age"])


def check_recovery(family, design):
    """theta and gamma: |posterior estimate - truth| < 3 posterior SD, and a 90% interval narrower than
    1.5 |truth| + 0.6 (the prior alone gives 3.29 for theta, N(0, 1), and 1.64 for gamma,
    N(0, 0.5^2), on the link scale; gaussian y is standardised, so its prior is wider still).
    Calibration is the coverage tests' job (test_models_coverage)."""
    cells, _, al, truth = simulate(family, design=design, n_clusters=14, n_periods=8, seed=11)
    fit = fit_model(cells, spec_for(family), alignment=al, sampler=FAST, diagnostics=LAX, seed=5)
    est = estimates(fit, {"prob": 0.9}).set_index("estimand")
    for name, key in [("treatment_effect", "theta"), ("alignment_interaction", "gamma")]:
        row = est.loc[name]  # reported scale (gaussian and lognormal back from standardised y)
        width = row["upper"] - row["lower"]
        sd = width / (2 * 1.645)  # the 90% interval of a near-normal posterior
        msg = f"{family}/{design}: {name} truth {truth[key]}, {row.to_dict()}"
        assert abs(row["estimate"] - truth[key]) < 3 * sd, msg
        assert width < 1.5 * abs(truth[key]) + 0.6, msg
    assert est.loc["treatment_effect", "r_hat"] < 1.05


# Fast suite: one recovery fit per likelihood (bernoulli and binomial share the binomial
# likelihood on cells), alternating the two designs; the full family x design grid is slow.
FAST_GRID = [
    ("binomial", "stepped_wedge"),
    ("gaussian", "controlled_before_after"),
    ("lognormal", "stepped_wedge"),
    ("poisson", "controlled_before_after"),
    ("negative_binomial", "stepped_wedge"),
]


@pytest.mark.parametrize(("family", "design"), FAST_GRID)
def test_recovery(family, design):
    """treatment_effect and alignment_interaction within 3 posterior SD of the simulated truth."""
    check_recovery(family, design)


@pytest.mark.slow
@pytest.mark.parametrize("design", ["stepped_wedge", "controlled_before_after"])
@pytest.mark.parametrize("family", FAMILIES)
def test_recovery_grid(family, design):
    """Every family x design (the fast suite covers one design per likelihood)."""
    if (family, design) in FAST_GRID:
        pytest.skip("in the fast suite")
    check_recovery(family, design)


@pytest.fixture(scope="module")
def binfit():
    cells, _, al, truth = simulate("binomial", n_clusters=10, n_periods=6, seed=7, fidelity=True)
    spec = spec_for("binomial", moderators=["alignment", "fidelity"], random_treatment=True)
    return fit_model(cells, spec, alignment=al, sampler=FAST, diagnostics=LAX, seed=3)


def test_estimand_table(binfit):
    est = estimates(binfit, {"prob": 0.8, "kind": "hdi"})
    assert list(est.columns) == COLUMNS
    names = set(est.estimand)
    assert {
        "treatment_effect",
        "treatment_effect_natural",
        "alignment_interaction",
        "effect_low_alignment",
        "effect_high_alignment",
        "fidelity_interaction",
        "prob_beats_trend",
        "marginal_difference",
        "sd_cluster",
        "sd_cluster_period",
        "sd_treatment",
        "icc",
        "cac",
    } <= names
    assert "sd_site" not in names  # two sites: no site variance is estimated (MIN_SITES = 3)
    e = est.set_index("estimand")
    assert (e.loc[e.interval != "", "interval"] == "hdi80").all()
    assert np.isnan(e.loc["prob_beats_trend", "lower"]) and 0 <= e.loc["prob_beats_trend", "estimate"] <= 1
    eti = estimates(binfit, {"prob": 0.9}).set_index("estimand")  # ETI: invariant under exp
    nat, link = eti.loc["treatment_effect_natural"], eti.loc["treatment_effect"]
    assert np.isclose(nat["upper"], np.exp(link["upper"]), rtol=0.01)
    assert -1 < e.loc["marginal_difference", "estimate"] < 1
    ce = cluster_effects(binfit, {"prob": 0.9})
    assert len(ce) == 10 and (ce.lower <= ce.upper).all()
    cf = counterfactual(binfit, {"prob": 0.9})
    assert len(cf) == 60 and {"actual_mean", "without_mean", "with_mean", "observed"} <= set(cf.columns)
    assert ((cf.without_lower >= 0) & (cf.without_upper <= 1)).all()
    ppc = posterior_predictive_check(binfit)
    assert 0 <= ppc["p_chi2"] <= 1 and ppc["coverage"] > 0.7


def test_save_and_load(binfit, tmp_path):
    path = save_posterior(
        binfit, tmp_path / "post.nc", {"config": {"id": "m"}, "seed": 3, "data_hash": "abc"}
    )
    tree, attrs = load_posterior(path)
    assert attrs["config"] == {"id": "m"} and attrs["seed"] == 3 and attrs["data_hash"] == "abc"
    assert {"posterior", "sample_stats", "log_likelihood"} <= set(tree.children)
    assert np.allclose(tree.posterior["treatment_effect"], binfit.idata.posterior["treatment_effect"])
    # the per-cell predictions are not written: the draws give them back exactly
    assert not set(PREDICTIONS) & set(tree.posterior.data_vars) and "eta" in binfit.idata.posterior
    restored = with_predictions(tree, binfit.model)
    for name in PREDICTIONS:
        np.testing.assert_array_equal(restored.posterior[name], binfit.idata.posterior[name])


def test_compare_loo(binfit):
    cells = binfit.design.cells
    al = binfit.design.align_raw
    other = fit_model(
        cells,
        spec_for("binomial", cluster_period="none", trend="linear"),
        alignment=al,
        sampler=FAST,
        diagnostics=LAX,
        seed=4,
    )
    comp = compare_loo({"full": binfit, "simple": other})
    assert set(comp.model) == {"full", "simple"}
    assert list(comp.columns) == list(LOO_COLUMNS)
    assert comp["rank"].tolist() == [0, 1] and comp["weight"].sum() == pytest.approx(1.0)


def test_forced_failure_retries_and_flags_unreliable():
    cells, _, al, _ = simulate("bernoulli", n_clusters=6, n_periods=5, n_per_cp=20, seed=9)
    strict = {"r_hat_max": 1.0001, "ess_bulk_min": 10_000, "ess_tail_min": 10_000, "retry": True}
    fit = fit_model(
        cells,
        spec_for("bernoulli"),
        alignment=al,
        sampler={"chains": 2, "draws": 20, "tune": 20},
        diagnostics=strict,
        seed=1,
    )
    assert fit.retried and not fit.reliable
    assert any("ESS" in p for p in fit.problems)
    att = fit.diagnostics["attempts"]
    assert len(att) == 2 and att[1]["target_accept"] >= 0.95 and att[1]["tune"] == 40
    assert fit.timings["compile_s"] > 0 and fit.timings["sample_s"] > 0
    assert isinstance(fit.diagnostics["summary"], pd.DataFrame)


def test_pymc_engine_and_prior_predictive():
    from qialign.models.checks import prior_predictive_check

    cells, _, al, _ = simulate("poisson", n_clusters=5, n_periods=4, n_per_cp=10, seed=3)
    spec = spec_for("poisson", trend="rw1", exposure="eti", cluster_period="ar1")
    pp = prior_predictive_check(cells, spec, alignment=al, draws=100)
    assert list(pp.columns) == ["quantity", "q05", "q50", "q95", "observed"]
    assert (pp.q05 <= pp.q95).all()
    fit = fit_model(
        cells,
        spec,
        alignment=al,
        sampler={"engine": "pymc", "chains": 2, "draws": 50, "tune": 50, "cores": 1},
        diagnostics={"retry": False},
        seed=1,
    )
    assert fit.idata.posterior.sizes["draw"] == 50
    assert "theta_e" in fit.idata.posterior and "rho" in fit.idata.posterior
    est = estimates(fit).set_index("estimand")
    assert {"rho", "cac"} <= set(est.index)


def test_hierarchically_centred_cluster_periods_give_the_same_posterior():
    """~1,000 patients per ward-month: auto centres the cluster-period effects (eta_cp is the
    parameter); the non-centred model is the same model, so posteriors agree within MC error."""
    cells, _, al, _ = simulate("binomial", n_clusters=8, n_periods=5, n_per_cp=1000, seed=5, sd_cp=0.15)
    cells = cells.groupby(["cluster", "site", "period", "treated", "exposure_time"], as_index=False)[
        ["n", "events"]
    ].sum()
    sampler = {"chains": 2, "draws": 600, "tune": 600}
    fits = {
        p: fit_model(
            cells,
            simulated_spec("binomial", {"id": "m", "parametrization": p}),
            alignment=al,
            sampler=sampler,
            diagnostics={"retry": False},
            seed=2,
        )
        for p in ("auto", "noncentred")
    }
    assert "eta_cluster_period" in fits["auto"].idata["posterior"]
    for name in ("treatment_effect", "alignment_interaction", "sd_cluster_period"):
        a, b = (np.asarray(f.idata["posterior"][name]).ravel() for f in fits.values())
        se = np.sqrt(a.var() / 300 + b.var() / 300)  # conservative ESS of 300 each
        assert abs(a.mean() - b.mean()) < 4 * se, name
    # and the centred fit needs fewer leapfrog steps
    steps = {p: float(np.asarray(f.idata["sample_stats"]["n_steps"]).mean()) for p, f in fits.items()}
    assert steps["auto"] < steps["noncentred"], steps
