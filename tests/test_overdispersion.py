"""Negative binomial counts recorded per ward-month carry their overdispersion at the cell.

The project's simulator draws cluster_period counts as NB(mean, shape phi) per cell; the default
model (``overdispersion: auto`` -> cell for a cluster_periods outcome, whose NB shape is then the
cluster-period effect: ``cluster_period: auto`` -> none) must recover phi and theta,
and its replicated cells must spread like the data. The old shape n x phi (right only for sums of
per-patient counts) needs phi / n, far in the prior's tail, for the same data.
"""

from __future__ import annotations

import pytest

from sim_pipeline import fit_through_steps, write_trial

PHI, THETA = 8.0, -0.3
SIM = {
    "design": "stepped_wedge",
    "periods": 10,
    "clusters_per_site": [6, 6],
    "schedule": {"baseline": 2, "every": 1, "per_step": 2},
    "survey": {"enabled": False},
    "fidelity": {"enabled": False},
    "write_alignment": True,
    "outcomes": {
        "incidents": {
            "family": "negative_binomial",
            "level": "cluster_period",
            "baseline": 30.0,
            "per": 1000,
            "phi": PHI,
            "treatment_effect": THETA,
            "sd_treatment": 0.0,
            "sd_cluster_period": 0.02,
            "betas": {},
        }
    },
}
TRIAL = {
    "id": "nb_cells",
    "design": "stepped_wedge",
    "outcomes": {"incidents": {"family": "negative_binomial", "exposure": "bed_days"}},
    "alignment": {"source": "given"},
    "sampler": {"chains": 2, "draws": 1000, "tune": 1000},
    "interval": {"prob": 0.9},
}


@pytest.fixture(scope="module")
def nb_fit(tmp_path_factory):
    work = tmp_path_factory.mktemp("nb_cells")
    config, truth = write_trial(work, SIM, 5, TRIAL)
    return (*fit_through_steps(config, "incidents", "main", work), truth)


def test_cell_level_shape_recovers_phi_and_theta(nb_fit):
    est, record, _ = nb_fit
    rows = {k: est.loc[k] for k in ("phi", "treatment_effect")}
    for name, truth in (("phi", PHI), ("treatment_effect", THETA)):
        row = rows[name]
        sd = (row["upper"] - row["lower"]) / (2 * 1.96)
        assert abs(row["estimate"] - truth) < 3 * sd, (name, row.to_dict())
        assert row["lower"] < truth < row["upper"], (name, row.to_dict())  # 90% interval
    # the per-patient shape n x phi (about 100 admissions a ward-month) would need phi near
    # PHI / 100; the cell shape keeps phi on the scale of the data. (phi and the exchangeable
    # cluster-period SD are only weakly separated with one count per cluster-period: both add
    # m^2-proportional variance, so the upper limit stays wide.)
    assert rows["phi"]["lower"] > 2
    assert record.r_hat_max < 1.02


def test_replicated_cells_spread_like_the_data(nb_fit):
    """PPC: the SD of replicated cell rates brackets the observed SD (not a saturated fit)."""
    _, record, _ = nb_fit
    assert 0.05 < record.ppc["p_sd"] < 0.95, record.ppc
    assert 0.05 < record.ppc["p_chi2"] < 0.95, record.ppc


def test_auto_resolves_by_table():
    from qialign.config import synthetic_trial
    from qialign.models.spec import ModelSpec

    models = [{"id": "m"}, {"id": "explicit", "overdispersion": "patient"}]
    cfg = synthetic_trial("stepped_wedge", {"y": {"family": "negative_binomial"}}, models)
    auto, explicit = ((m, "y", cfg["outcomes"]["y"], cfg) for m in cfg["models"])
    assert ModelSpec.from_config(*auto, table="cluster_periods").overdispersion == "cell"
    assert ModelSpec.from_config(*auto, table="patients").overdispersion == "patient"
    assert ModelSpec.from_config(*explicit, table="cluster_periods").overdispersion == "patient"
