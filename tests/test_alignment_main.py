"""Alignment as a main effect: a controlled before-after trial whose baseline outcome level depends
on alignment (slow: 20 simulated trials through the real steps, two models each).

Without the main effect, the baseline difference can go only into the shrunk cluster intercepts,
and what they do not absorb leaks into the alignment x treatment interaction gamma.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from sim_pipeline import binomial_range, fit_through_steps, posterior, write_trial

pytestmark = pytest.mark.slow

GAMMA, ALPHA, THETA = 0.3, 1.5, -0.3
REPLICATES = int(os.environ.get("QIALIGN_REPLICATES", 20))
SIM = {
    "design": "controlled_before_after",
    "periods": 8,
    "clusters_per_site": [20, 20],
    "schedule": {"start": 2, "controls": 20, "randomise_order": True},
    "patients": {"per_period": 10},
    "survey": {"enabled": False},
    "fidelity": {"enabled": False},
    "write_alignment": True,
    "outcomes": {
        "y": {
            "family": "bernoulli",
            "baseline": 0.3,
            "treatment_effect": THETA,
            "alignment_main": ALPHA,
            "alignment_interaction": GAMMA,
            "sd_treatment": 0.0,
            "sd_site": 0.0,
            "sd_cluster": 0.15,
            "sd_cluster_period": 0.05,
            "betas": {},
        }
    },
}
TRIAL = {
    "id": "cba_alignment",
    "design": "controlled_before_after",
    "outcomes": {"y": {"family": "bernoulli"}},
    "alignment": {"source": "given"},
    "models": [{"id": "main"}, {"id": "interaction_only", "moderator_main_effects": False}],
    "interval": {"prob": 0.9},
    "diagnostics": {"retry": False},
}


def test_main_effect_keeps_gamma_calibrated(tmp_path):
    """Per replicate, 90% and 50% intervals for gamma. With the main effect: calibrated (each
    coverage count in the two-sided 99% binomial range, 14..20 and 4..16 of 20, so too wide fails
    as well as too narrow) and unbiased; without it the baseline difference leaks into gamma
    (mean error more than twice as large, coverage no better). Few patients per ward (10 per
    ward-month) and one baseline period, so the treated wards' intercepts are shrunk: the
    setting where the leak shows (40 wards, so that gamma itself is precise)."""
    hits = {"main": [], "interaction_only": []}
    half = {"main": [], "interaction_only": []}  # 50% intervals, from the posterior draws
    errors = {"main": [], "interaction_only": []}
    for rep in range(REPLICATES):
        work = tmp_path / f"rep{rep}"
        config, _ = write_trial(work, SIM, 100 + rep, TRIAL)
        for model in hits:
            est, _ = fit_through_steps(config, "y", model, work)
            g = est.loc["alignment_interaction"]
            hits[model].append(g["lower"] < GAMMA < g["upper"])
            lo, hi = np.quantile(posterior(work, "y", model)["alignment_interaction"], [0.25, 0.75])
            half[model].append(lo < GAMMA < hi)
            errors[model].append(g["estimate"] - GAMMA)
    cover = {m: float(np.mean(h)) for m, h in hits.items()}
    cover50 = {m: float(np.mean(h)) for m, h in half.items()}
    bias = {m: float(np.mean(e)) for m, e in errors.items()}
    print(f"\ncoverage of gamma (90%): {cover}; (50%): {cover50}; mean error: {bias}")
    for prob, counts in ((0.9, hits), (0.5, half)):
        lo, hi = binomial_range(REPLICATES, prob)
        assert lo <= sum(counts["main"]) <= hi, (prob, sum(counts["main"]), (lo, hi))
    assert abs(bias["main"]) < 0.1
    assert abs(bias["interaction_only"]) > max(0.1, 2 * abs(bias["main"]))
    assert cover["interaction_only"] <= cover["main"]
