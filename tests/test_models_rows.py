"""Sufficient-statistic cells vs row-level likelihood give the same posterior (Monte Carlo error)."""

import arviz as az
import numpy as np
import pytest

from models_sim import simulate
from qialign.inference.fit import fit_model
from qialign.models.spec import simulated_spec

SAMPLER = {"chains": 2, "draws": 1000, "tune": 500, "cores": 2}
NOCHECK = {"retry": False}


@pytest.mark.parametrize("family", ["bernoulli", "gaussian"])
def test_cells_and_rows_agree(family):
    cells, rows, al, _ = simulate(family, n_clusters=8, n_periods=5, n_per_cp=15, seed=21)
    spec = simulated_spec(family, {"id": "m"}, covariates=["age"])
    assert len(rows) > 4 * len(cells)
    fits = [
        fit_model(t, spec, alignment=al, sampler=SAMPLER, diagnostics=NOCHECK, seed=2) for t in (cells, rows)
    ]
    names = ["treatment_effect", "alignment_interaction"]
    s = [az.summary(f.idata, var_names=names, round_to="none") for f in fits]
    for v in names:
        a, b = s[0].loc[v], s[1].loc[v]
        tol_mean = 4 * np.hypot(a.mcse_mean, b.mcse_mean)
        tol_sd = 4 * np.hypot(a.mcse_sd, b.mcse_sd)
        assert abs(a["mean"] - b["mean"]) < tol_mean, (v, a["mean"], b["mean"], tol_mean)
        assert abs(a["sd"] - b["sd"]) < tol_sd, (v, a["sd"], b["sd"], tol_sd)
