"""The mixed posterior predictive check sees overdispersion a family lacks.

NB counts per ward-month (shape 2, as simulated in test_overdispersion) are fitted through the
real steps twice: as Poisson with no cluster-period effects (the wrong family: no term can carry
the extra spread) and as NB with its cell shape (``cluster_period: auto`` -> none). The mixed check
must reject the first and accept the second, in both variants.

(A Poisson fit with the default exchangeable cluster-period effects is Poisson-lognormal, itself
an overdispersed family: on these data its mixed p-values were 0.61 (new cluster-periods) and
0.66 (new clusters), rightly not a rejection.)
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.special import expit

from estimand_fits import cached_fit
from qialign.models.checks import MIXED_REDRAWS, mixed_p_value, mixed_replicates
from sim_pipeline import fit_through_steps, write_trial
from test_overdispersion import SIM as NB_SIM
from test_report import _section

# the overdispersion test's NB ward-month trial, more overdispersed (shape 2)
SIM = {**NB_SIM, "outcomes": {"incidents": {**NB_SIM["outcomes"]["incidents"], "phi": 2.0}}}
SAMPLER = {"chains": 2, "draws": 300, "tune": 400}


def _trial(family: str, model: dict) -> dict:
    return {
        "id": f"mixed_{family}",
        "design": "stepped_wedge",
        "outcomes": {"incidents": {"family": family, "exposure": "bed_days"}},
        "alignment": {"source": "given"},
        "sampler": SAMPLER,
        "interval": {"prob": 0.9},
        "models": [{"id": "main", **model}],
    }


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    out = {}
    for family, model in (("poisson", {"cluster_period": "none"}), ("negative_binomial", {})):
        work = tmp_path_factory.mktemp(family)
        config, _ = write_trial(work, SIM, 11, _trial(family, model))
        out[family] = fit_through_steps(config, "incidents", "main", work)[1]
    return out


@pytest.mark.slow
def test_mixed_check_rejects_poisson_and_accepts_nb(records):
    """The mixed check rejects (p < 0.05) the Poisson fit to NB counts and accepts (0.05 < p < 0.95) the
    NB fit, for new cluster-periods and for new clusters."""
    poisson, nb = records["poisson"].ppc, records["negative_binomial"].ppc
    for variant in ("p_mixed_cluster_period", "p_mixed_cluster"):
        assert poisson[variant] < 0.05, poisson
        assert 0.05 < nb[variant] < 0.95, nb


def test_mixed_p_value_by_hand():
    """Per draw: M, W from replicates 1.., T against replicate 0 on the same footing."""
    # one cell, two draws, inner 4: draw 0 replicates (rep0 = 3; rest 0, 2, 4: M 2, W 4),
    # draw 1 (rep0 = 0; rest 1, 1, 4: M 2, W 3)
    rep = np.array([[3.0, 0.0], [0.0, 1.0], [2.0, 1.0], [4.0, 4.0]])[:, :, None]
    # y = 5: T_obs = (9 / 4, 9 / 3); T_rep = (1 / 4, 4 / 3): neither >= -> p = 0
    assert mixed_p_value(np.array([5.0]), rep) == 0.0
    # y = 2: T_obs = (0, 0) -> p = 1; y = 3.5: T_obs = (2.25 / 4, 2.25 / 3): only draw 1 -> 0.5
    assert mixed_p_value(np.array([2.0]), rep) == 1.0
    assert mixed_p_value(np.array([3.5]), rep) == 0.5
    # a cell whose replicates never vary is left out
    flat = np.concatenate([rep, np.full((4, 2, 1), 7.0)], axis=-1)
    assert mixed_p_value(np.array([3.5, 9.0]), flat) == 0.5


@pytest.mark.slow
def test_report_quotes_the_mixed_p_values(sicily):
    """The AR(1) Sicily fit (rho and SD redrawn per draw) through the real steps and report."""
    ppc = json.loads((sicily["results"] / "aces" / "its" / "fit.json").read_text())["ppc"]
    checks = _section(sicily["html"], "model-checks")
    labels = {"p_mixed_cluster_period": "new cluster-periods", "p_mixed_cluster": "new clusters"}
    for variant, label in labels.items():
        assert 0 <= ppc[variant] <= 1, ppc
        assert f"{label} {ppc[variant]:.2f}" in checks


def test_mixed_replicates_follow_their_posterior_draw():
    """The vectorised forward draw pairs replicate (i, s) with thinned posterior draw s: with
    nothing redrawn, replicate totals of draw s scatter around sum_c n_c p_sc with binomial
    variance (standardised squares average ~1; a shuffled pairing gives ~1 + inner x the ratio
    of posterior to binomial spread), and redrawing new clusters widens each cell's."""
    fit = cached_fit("binomial")
    draws, inner = 100, 10
    reps = mixed_replicates(fit, (), draws=draws, inner=inner, seed=3)
    eta = np.asarray(fit.idata["posterior"]["eta"]).reshape(-1, fit.design.n_cells)
    p = expit(eta[:: -(-len(eta) // draws)][:draws])
    n = fit.design.n
    expected, var = (n * p).sum(-1), (n * p * (1 - p)).sum(-1)
    z2 = (reps.sum(-1).mean(0) - expected) ** 2 / (var / inner)
    assert 0.6 < z2.mean() < 1.6, z2.mean()
    shuffled = (reps.sum(-1).mean(0)[::-1] - expected) ** 2 / (var / inner)
    assert shuffled.mean() > 3, shuffled.mean()
    new_clusters = mixed_replicates(fit, MIXED_REDRAWS["cluster"], draws=draws, inner=inner, seed=3)
    ratio = new_clusters.var(0).mean() / reps.var(0).mean()  # per cell (cluster totals sum to zero)
    assert ratio > 1.1, ratio  # 1.22 with seeds 3 and 4
