"""Every estimand of a real fit equals its direct computation from the posterior draws (to 1e-12).

Written from the definitions (DESIGN §4), not from estimands.py: a flipped sign, a swapped
quantile or a negated difference there fails here. One small binomial stepped wedge and one
lognormal fit (the marginal difference integrates exp(m + s^2 / 2) on the raw scale).
"""

from __future__ import annotations

import dataclasses
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
from scipy.special import expit

from models_sim import simulate
from qialign.inference.fit import fit_model
from qialign.models.estimands import estimates
from qialign.models.spec import simulated_spec

SAMPLER = {"chains": 2, "draws": 150, "tune": 150}
LAX = {"retry": False}


def _fit(family: str):
    cells, _, alignment, _ = simulate(family, n_clusters=8, n_periods=5, n_per_cp=20, seed=3)
    spec = simulated_spec(family, {"id": "m", "covariates": False})
    return fit_model(cells, spec, alignment=alignment, sampler=SAMPLER, diagnostics=LAX, seed=2)


def _cached_fit(family: str):
    """The fit; under ``make mutate`` (which mutates estimands, not the sampler) fitted once and kept
    in ``$QIALIGN_TEST_FIT_CACHE``, so each mutant is tested in seconds."""
    cache = os.environ.get("QIALIGN_TEST_FIT_CACHE")
    if not cache:
        return _fit(family)
    path = Path(cache) / f"estimands_exact_{family}.pkl"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(pickle.dumps(dataclasses.replace(_fit(family), model=None)))
    return pickle.loads(path.read_bytes())


@pytest.fixture(scope="module", params=["binomial", "lognormal"])
def fitted(request):
    fit = _cached_fit(request.param)
    return fit, estimates(fit, {"prob": 0.9}).set_index("estimand")


def _draws(fit, name):
    return np.asarray(fit.idata["posterior"][name], float)


def test_effects_and_probability(fitted):
    fit, est = fitted
    ys = fit.design.y_scale if fit.spec.family == "lognormal" else 1.0
    theta = _draws(fit, "treatment_effect") * ys
    gamma = _draws(fit, "alignment_interaction") * ys
    alpha = _draws(fit, "alignment_main") * ys
    z = fit.design.A
    lo_z, hi_z = np.quantile(z, 0.1), np.quantile(z, 0.9)
    assert lo_z < 0 < hi_z
    expected = {
        "treatment_effect": theta.mean(),
        "treatment_effect_natural": np.exp(theta).mean(),
        "alignment_interaction": gamma.mean(),
        "alignment_main": alpha.mean(),
        "effect_low_alignment": (theta + gamma * lo_z).mean(),
        "effect_high_alignment": (theta + gamma * hi_z).mean(),
        "prob_beats_trend": (theta < 0).mean(),  # better: lower
    }
    for name, value in expected.items():
        assert est.loc[name, "estimate"] == pytest.approx(value, abs=1e-12), name
    q = np.quantile(theta.ravel(), [0.05, 0.95])
    np.testing.assert_allclose(est.loc["treatment_effect", ["lower", "upper"]].to_numpy(float), q, atol=1e-12)


def test_marginal_difference_is_on_minus_off_weighted_by_patients(fitted):
    """Standardisation over the analysed cells: E[y | on] - E[y | off] per cell, weighted by n."""
    fit, est = fitted
    d = fit.design
    eta, tx = _draws(fit, "eta"), _draws(fit, "tx")
    effect = _draws(fit, "cluster_effect")[..., d.cluster_idx]
    off, on = eta - tx, eta - tx + effect
    if fit.spec.family == "binomial":
        mean_on, mean_off = expit(on), expit(off)
    else:
        s = _draws(fit, "sigma")[..., None] * d.y_scale
        mean_on = np.exp(d.y_center + d.y_scale * on + s**2 / 2)
        mean_off = np.exp(d.y_center + d.y_scale * off + s**2 / 2)
    diff = ((mean_on - mean_off) * d.n).sum(-1) / d.n.sum()
    assert est.loc["marginal_difference", "estimate"] == pytest.approx(diff.mean(), abs=1e-12)
    assert np.sign(est.loc["marginal_difference", "estimate"]) == np.sign(
        est.loc["treatment_effect", "estimate"]
    )
