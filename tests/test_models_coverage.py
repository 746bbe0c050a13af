"""Slow: frequentist coverage of 90% intervals over 20 simulated trials per family."""

import pytest
from scipy.stats import binom

from models_sim import simulate
from qialign.inference.fit import fit_model
from qialign.models.estimands import estimates
from qialign.models.spec import simulated_spec

FAMILIES = ["bernoulli", "gaussian", "lognormal", "poisson", "negative_binomial"]
N_TRIALS = 20


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
def test_interval_coverage(family):
    """>= 14/20 intervals cover the truth (P(X <= 13 | 20, 0.9) = 0.002 if calibrated)."""
    spec = simulated_spec(family, {"id": "m"}, covariates=["age"])
    hits = {"treatment_effect": 0, "alignment_interaction": 0}
    for i in range(N_TRIALS):
        design = "stepped_wedge" if i % 2 == 0 else "controlled_before_after"
        cells, _, al, truth = simulate(family, design=design, n_clusters=12, n_periods=6, seed=1000 + i)
        fit = fit_model(
            cells,
            spec,
            alignment=al,
            seed=i,
            sampler={"chains": 2, "draws": 400, "tune": 400},
            diagnostics={"retry": False},
        )
        est = estimates(fit, {"prob": 0.9}).set_index("estimand")
        for name, key in [("treatment_effect", "theta"), ("alignment_interaction", "gamma")]:
            hits[name] += est.loc[name, "lower"] <= truth[key] <= est.loc[name, "upper"]
    print(f"{family}: 90% intervals covering the truth in {N_TRIALS} trials: {hits}")
    assert binom.cdf(13, N_TRIALS, 0.9) < 0.01
    assert all(h >= 14 for h in hits.values()), hits
