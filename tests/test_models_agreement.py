"""Bayesian and frequentist estimates agree where they estimate the same thing.

Issue 3: with weak priors and plenty of data, the Bayesian posterior mean of treatment_effect and the
MixedLM (REML) estimate of the same gaussian mixed model (categorical periods, cluster and
cluster-period intercepts) agree within 0.3 of MixedLM's standard error.
"""

from __future__ import annotations

import pytest

from models_sim import simulate
from qialign.frequentist import cross_check
from qialign.inference.fit import fit_model
from qialign.models.estimands import estimates
from qialign.models.spec import simulated_spec

WEAK = {"intercept_sd": 10.0, "trend_sd": 10.0, "effect_sd": 10.0, "beta_sd": 10.0}


@pytest.fixture(scope="module")
def gaussian_trial():
    # 20 clusters x 8 periods x 100 patients; no alignment moderation, no covariates
    cells, row_cells, _, truth = simulate(
        "gaussian", n_clusters=20, n_periods=8, n_per_cp=100, seed=21, gamma=0.0, age_effect=0.0
    )
    rows = row_cells.rename(columns={"sum": "y"}).drop(columns=["sumsq"])
    return cells, rows, truth


def test_bayes_and_mixedlm_agree_within_a_third_of_a_standard_error(gaussian_trial):
    cells, rows, truth = gaussian_trial
    spec = simulated_spec("gaussian", {"id": "hh", "moderators": [], "covariates": False, "priors": WEAK})
    fit = fit_model(cells, spec, sampler={"chains": 4, "draws": 500, "tune": 500, "cores": 2},
                    diagnostics={"retry": False}, seed=3)  # fmt: skip
    bayes = estimates(fit, {"prob": 0.95}).set_index("estimand").loc["treatment_effect", "estimate"]
    freq = cross_check(rows, "gaussian", trend="period", methods=("mixedlm",))
    mixed = freq.set_index("estimand").loc["treatment_effect"]
    assert abs(bayes - mixed["estimate"]) < 0.3 * mixed["se"], (bayes, mixed["estimate"], mixed["se"])
    # and both are near the truth (theta = -1.5 on the outcome scale)
    assert abs(mixed["estimate"] - truth["theta"]) < 3 * mixed["se"]
