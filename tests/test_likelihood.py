"""The written-out cell likelihoods are PyMC's, and a model built per covariate stratum has the
per-cell model's log density and gradient (``qialign.models.likelihood``, ``covariate_strata``)."""

from __future__ import annotations

import numpy as np
import pymc as pm
import pytest
import xarray as xr
from scipy.special import expit

import qialign.models.build as build
from models_sim import simulate
from qialign.inference.fit import pointwise_loglik, stored_per_draw, with_predictions
from qialign.models.build import build_model
from qialign.models.design import build_design, covariate_strata
from qialign.models.likelihood import (
    LOG_BASE_DATA,
    OBSERVED_DATA,
    _binomial_logp,
    _binomial_random,
    _poisson_logp,
    observed_arrays,
)
from qialign.models.spec import simulated_spec

RNG = np.random.default_rng(11)
N = np.array([1.0, 1.0, 5.0, 20.0, 300.0])
ETA = np.array([-3.0, 0.4, -0.2, 1.7, -6.0])


def test_binomial_logp_is_pymcs_with_log_binomial_coefficient_as_data():
    y = np.array([0.0, 1.0, 2.0, 19.0, 1.0])
    data = observed_arrays("binomial", y, N)
    assert set(data) == {OBSERVED_DATA, LOG_BASE_DATA}
    ours = _binomial_logp(y, ETA, N, data[LOG_BASE_DATA]).eval()
    theirs = pm.logp(pm.Binomial.dist(n=N, logit_p=ETA), y).eval()
    np.testing.assert_allclose(ours, theirs, rtol=1e-12)
    # log C(n, y), exactly: log C(20, 19) = log 20, log C(1, y) = 0
    np.testing.assert_allclose(data[LOG_BASE_DATA][[0, 1, 3]], [0.0, 0.0, np.log(20.0)], atol=1e-12)


def test_poisson_logp_is_pymcs():
    y = np.array([0.0, 3.0, 7.0, 1.0, 40.0])
    log_mu = ETA + np.log(N)
    ours = _poisson_logp(y, log_mu, observed_arrays("poisson", y, N)[LOG_BASE_DATA]).eval()
    theirs = pm.logp(pm.Poisson.dist(mu=np.exp(log_mu)), y).eval()
    np.testing.assert_allclose(ours, theirs, rtol=1e-12)


def test_gaussian_and_nb_outcomes_have_no_log_base_data():
    assert set(observed_arrays("gaussian", ETA, N)) == {OBSERVED_DATA}
    assert set(observed_arrays("negative_binomial", ETA, N)) == {OBSERVED_DATA}


@pytest.mark.parametrize("n", [N, np.ones_like(N)])  # patient rows (n = 1): uniforms below p
def test_binomial_replicates_have_the_model_mean(n):
    draws = _binomial_random(ETA, n, None, rng=RNG, size=(20_000, len(n)))
    assert draws.shape == (20_000, len(n)) and draws.dtype == np.int64
    se = np.sqrt(n * expit(ETA) * (1 - expit(ETA)) / 20_000)
    assert np.all(np.abs(draws.mean(0) - n * expit(ETA)) < 5 * se)
    assert draws.min() >= 0 and np.all(draws.max(0) <= n)


def _rows(family: str, fidelity: bool = False):
    _, rows, al, _ = simulate(family, n_clusters=6, n_periods=4, n_per_cp=8, seed=5, fidelity=fidelity)
    model = {"id": "m", "moderators": ["alignment", "fidelity"] if fidelity else ["alignment"]}
    spec = simulated_spec(family, model, covariates=["age"])
    return build_design(rows, spec, al), spec


def test_patient_rows_collapse_to_their_cluster_periods():
    d, _ = _rows("bernoulli")
    first, index = covariate_strata(d)
    assert len(first) == len(d.cp_keys) < d.n_cells  # every term but Z beta is per cluster-period
    np.testing.assert_array_equal(d.cp_idx[first][index], d.cp_idx)
    np.testing.assert_array_equal(d.h[first][index], d.h)


def test_cells_that_differ_in_more_than_covariates_are_their_own_strata():
    d, _ = _rows("bernoulli")
    # no covariates: each aggregated cell is one cluster-period, its own stratum
    cells = d.cells.groupby(["cluster", "site", "period", "treated", "exposure_time"], as_index=False)[
        ["n", "events"]
    ].sum()
    spec = simulated_spec("bernoulli", {"id": "m", "moderators": []})
    assert covariate_strata(build_design(cells, spec)) is None


@pytest.mark.parametrize(
    "family,fidelity",
    [("bernoulli", True), ("poisson", False), ("gaussian", False), ("negative_binomial", False)],
)
def test_the_stratum_model_has_the_per_cell_models_logp_and_gradient(family, fidelity, monkeypatch):
    d, spec = _rows(family, fidelity)
    assert covariate_strata(d) is not None
    by_stratum = build_model(d, spec)
    monkeypatch.setattr(build, "covariate_strata", lambda design: None)
    per_cell = build_model(d, spec)
    assert "stratum_idx" in by_stratum.named_vars and "stratum_idx" not in per_cell.named_vars
    point = {k: v + RNG.normal(0, 0.3, np.shape(v)) for k, v in per_cell.initial_point().items()}
    lp_cell, lp_stratum = per_cell.compile_logp()(point), by_stratum.compile_logp()(point)
    assert lp_stratum == pytest.approx(lp_cell, rel=1e-11)
    np.testing.assert_allclose(by_stratum.compile_dlogp()(point), per_cell.compile_dlogp()(point), rtol=1e-9)
    eta = []  # the stored cell predictions, at the same point
    for m in (per_cell, by_stratum):
        (value,) = m.replace_rvs_by_values([m["eta"]])
        eta.append(m.compile_fn(value, inputs=m.value_vars, on_unused_input="ignore")(point))
    np.testing.assert_allclose(eta[1], eta[0], rtol=1e-12)


@pytest.mark.parametrize("family", ["binomial", "poisson", "negative_binomial", "gaussian", "lognormal"])
def test_pointwise_loglik_is_pymcs_per_cell_log_likelihood(family):
    """The LOO log-likelihood written from the stored cell predictions (``pointwise_loglik``) is
    PyMC's own log density of every cell at the same draws (here: 12 prior draws)."""
    cells, _, al, _ = simulate(family, n_clusters=6, n_periods=4, n_per_cp=8, seed=5)
    spec = simulated_spec(family, {"id": "m"})  # cluster-period cells: n = 8, 0 < events < n
    d = build_design(cells, spec, al)
    model = build_model(d, spec)
    with model:
        prior = pm.sample_prior_predictive(draws=12, random_seed=3, var_names=stored_per_draw(model))
    idata = xr.DataTree.from_dict({"posterior": prior["prior"].to_dataset()})
    idata = with_predictions(idata, model)
    ours = pointwise_loglik(d, idata["posterior"], spec)
    theirs = pm.compute_log_likelihood(idata, model=model, progressbar=False)["log_likelihood"]["y"]
    assert ours.shape == theirs.shape and np.isfinite(ours).all()
    np.testing.assert_allclose(ours, np.asarray(theirs), rtol=1e-9, atol=1e-9)
