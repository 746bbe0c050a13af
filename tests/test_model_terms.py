"""build_model composes its term builders: each term adds its own variables and dimensions, in a
fixed order, and the composed linear predictor is the sum of the terms."""

from __future__ import annotations

import numpy as np
import pymc as pm
import pytest

from models_sim import simulate
from qialign.models.build import build_model, covariate_term, site_term, trend_term
from qialign.models.design import build_design
from qialign.models.spec import simulated_spec


def _design(spec_cfg: dict, family: str = "binomial"):
    cells, _, al, _ = simulate(family, n_clusters=6, n_periods=5, n_per_cp=10, seed=3)
    spec = simulated_spec(family, {"id": "m", **spec_cfg}, covariates=["age"])
    return build_design(cells, spec, al), spec


def test_the_full_model_has_every_terms_variables_in_order():
    d, spec = _design({"trend": "rw1", "exposure": "eti", "cluster_period": "ar1", "random_treatment": True})
    model = build_model(d, spec)
    free = [v.name for v in model.free_RVs]
    assert free == [
        "mu",
        "sd_trend",
        "z_trend",  # trend
        "beta",  # covariates
        "treatment_effect",
        "exposure_deviation",  # treatment: theta and sum-to-zero exposure-time deviations
        "alignment_main",
        "alignment_interaction",  # moderators
        "sd_treatment",
        "z_treatment",  # random treatment effects
        "sd_cluster",
        "z_cluster",  # cluster intercepts (one site: no site term)
        "sd_cluster_period",
        "rho",
        "z_cluster_period",  # AR(1) cluster-period effects
    ]
    assert {"trend", "treatment_effect", "cluster_effect", "beta_raw", "eta", "tx"} <= set(model.named_vars)
    assert model.named_vars_to_dims["theta_e"] == ("exposure_time",)
    assert list(model.coords["exposure_time"]) == list(d.eti_levels)
    assert model.named_vars_to_dims["z_cluster_period"] == ("cluster", "period")


def test_a_term_registers_its_own_dimensions():
    d, spec = _design({"trend": "linear"})
    with pm.Model(coords={"cell": np.arange(d.n_cells), "period": d.periods}) as model:
        f = trend_term(d, spec, spec.priors)
        zb = covariate_term(d, spec.priors)
        assert site_term(d, spec, spec.priors, 0.0) == 0.0  # one site: no term, no variables
    assert list(model.coords["trend_term"]) == list(d.trend_names)
    assert list(model.coords["covariate"]) == list(d.cov_names)
    assert "site" not in model.coords
    assert [v.name for v in model.free_RVs] == ["b_trend", "beta"]
    # the term's values: the basis times its coefficients, per period and per cell
    point = {"b_trend": np.array([0.5] * len(d.trend_names)), "beta": np.array([2.0] * len(d.cov_names))}
    fn = model.compile_fn([f, zb], inputs=[model["b_trend"], model["beta"]], on_unused_input="ignore")
    f_num, zb_num = fn(point)
    np.testing.assert_allclose(f_num, d.trend_P @ point["b_trend"], rtol=1e-12)
    np.testing.assert_allclose(zb_num, d.Z @ point["beta"], rtol=1e-12)


@pytest.mark.parametrize("family", ["binomial", "poisson", "negative_binomial", "gaussian"])
def test_the_stored_linear_predictor_is_the_sum_of_the_terms(family):
    """eta = mu + f(t) + Z beta + alpha A + h (theta + gamma A) + v + w, checked at a random point."""
    d, spec = _design(
        {"trend": "period", "cluster_period": "exchangeable", "parametrization": "noncentred"}, family
    )
    model = build_model(d, spec)
    rng = np.random.default_rng(0)
    point = {k: v + rng.normal(0, 0.3, np.shape(v)) for k, v in model.initial_point().items()}
    names = ["eta", "mu", "trend", "beta", "alignment_main", "alignment_interaction", "treatment_effect"]
    names += ["sd_cluster", "z_cluster", "sd_cluster_period", "z_cluster_period"]
    fn = model.compile_fn([model[n] for n in names], inputs=model.value_vars, on_unused_input="ignore")
    v = dict(zip(names, fn(point), strict=True))
    f = v["trend"] - v["trend"].mean()  # b_trend sums to zero and trend = b_trend - b_trend[0]
    A = d.A[d.cluster_idx]
    expect = (
        v["mu"]
        + f[d.period_idx]
        + d.Z @ v["beta"]
        + v["alignment_main"] * A
        + d.h * (v["treatment_effect"] + v["alignment_interaction"] * A)
        + (v["sd_cluster"] * v["z_cluster"])[d.cluster_idx]
        + (v["sd_cluster_period"] * v["z_cluster_period"])[d.cp_idx]
    )
    np.testing.assert_allclose(v["eta"], expect, rtol=1e-10, atol=1e-10)
