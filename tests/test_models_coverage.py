"""Slow: frequentist coverage of 50% and 90% intervals over 20 simulated trials per family.

Each count must lie in the two-sided 99% binomial range of a calibrated interval
(``sim_pipeline.binomial_range``): 90% intervals 14..20 of 20 (the upper end cannot bite with 20
replicates), 50% intervals 4..16 of 20, so an interval too wide (a 90% one covers ~20 of 20 at
the 50% level) fails as well as one too narrow.
"""

import pytest

from models_sim import simulate
from qialign.inference.fit import fit_model
from qialign.models.estimands import estimates
from qialign.models.spec import simulated_spec
from sim_pipeline import binomial_range

FAMILIES = ["bernoulli", "gaussian", "lognormal", "poisson", "negative_binomial"]
N_TRIALS = 20
LEVELS = (0.5, 0.9)
PARAMETERS = {"treatment_effect": "theta", "alignment_interaction": "gamma"}


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
def test_interval_coverage(family):
    """theta and gamma: 50% and 90% intervals each cover the truth a calibrated number of times
    (99% binomial range for 20 trials): proves the posterior width is right, not just wide."""
    spec = simulated_spec(family, {"id": "m"}, covariates=["age"])
    hits = {(name, prob): 0 for name in PARAMETERS for prob in LEVELS}
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
        for prob in LEVELS:
            est = estimates(fit, {"prob": prob}).set_index("estimand")
            for name, key in PARAMETERS.items():
                hits[name, prob] += bool(est.loc[name, "lower"] <= truth[key] <= est.loc[name, "upper"])
    print(f"{family}: intervals covering the truth in {N_TRIALS} trials: {hits}")
    for (name, prob), count in hits.items():
        lo, hi = binomial_range(N_TRIALS, prob)
        assert lo <= count <= hi, (name, prob, count, (lo, hi))
