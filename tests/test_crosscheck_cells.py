"""Cross-checks at the level the data were recorded: cluster-period cells against the same patients.

Binomial and gaussian/lognormal cells are means of n individuals and the GEE keeps its working
correlation on individuals, so cells and rows give the same numbers (to rounding) for every GEE,
sandwich and the CR1 GLM; the REML mixed model on cell means (within-cell variance from the SDs)
matches statsmodels' row-level REML to optimiser tolerance. Count cells are one observation each:
the GLM (independence) equals the rows exactly, the exchangeable GEEs (correlation between cells,
not patients) agree only roughly.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

import models_sim
from qialign.errors import QialignError
from qialign.frequentist import build_design, cross_check
from qialign.steps.crosscheck import recorded_level

EXACT = 1e-8  # cells vs rows where the estimator allows it (absolute, log-odds / log / mean scale)
MIXED_EST = 1e-4  # REML optimisers (ours on cells, statsmodels on rows): estimates
MIXED_SE = 1e-3  # relative; both (X'V^-1X)^-1 at the REML variances
COUNT_GEE_SE = 1.0  # exchangeable count GEE, cells vs patients: within one robust SE


def simulate(family, seed=4, clusters=10, periods=5, m=20, theta=0.4, gamma=0.2):
    """Stepped-wedge patients from the project's simulator (tests/models_sim.py): one row per
    patient with the cluster's standardised alignment; cell sizes vary (Poisson, mean m)."""
    _, rows, align, _ = models_sim.simulate(
        family, n_clusters=clusters, n_periods=periods, n_per_cp=m, seed=seed, theta=theta, gamma=gamma,
        age_effect=0.0,
    )  # fmt: skip
    z = (align - align.mean()) / align.std(ddof=1)
    y = {"events": rows.get("events"), "sum": rows.get("sum"), "count": rows.get("count")}
    value = next(v for v in y.values() if v is not None)
    d = rows[["cluster", "period", "treated"]].assign(
        alignment_z=rows["cluster"].map(z).to_numpy(),
        y=np.exp(value) if family == "lognormal" else value,
        n=1,
    )
    if family in ("poisson", "negative_binomial"):
        d["exposure"] = 1.0
    return d


def to_cells(d, family):
    """The same patients as cluster_periods cells, in the prepared-rows layout (y, n, sd, exposure)."""
    keys = ["cluster", "period", "treated", "alignment_z"]
    v = np.log(d["y"]) if family == "lognormal" else d["y"]
    g = d.assign(v=v).groupby(keys, as_index=False)
    if family in ("gaussian", "lognormal"):  # mean and sample SD (log scale for lognormal)
        return g.agg(y=("v", "mean"), sd=("v", "std"), n=("v", "size"))
    cells = g.agg(y=("v", "sum"), n=("v", "size"))
    if family in ("poisson", "negative_binomial"):
        cells["exposure"] = cells["n"].astype(float)
    return cells


def compare(family, **kw):
    d = simulate(family, **kw)
    rows = cross_check(d, family, moderators=["alignment_z"], tol=1e-10)
    cells = cross_check(to_cells(d, family), family, moderators=["alignment_z"], level="cell", tol=1e-10)
    assert list(cells.method) == list(rows.method) and list(cells.estimand) == list(rows.estimand)
    link = rows.estimand.isin(["treatment_effect", "alignment_interaction"])
    return rows[link].reset_index(drop=True), cells[link].reset_index(drop=True)


@pytest.mark.parametrize("family", ["bernoulli", "gaussian", "lognormal"])
def test_means_of_individuals_give_the_rows_numbers(family):
    rows, cells = compare(family)
    assert np.isfinite(rows[["estimate", "se"]].to_numpy()).all()
    exact = rows.method != "mixedlm"
    assert exact.sum() == 18  # 2 GEE correlations x 4 sandwiches + GLM, two estimands each
    np.testing.assert_allclose(
        cells.loc[exact, ["estimate", "se"]], rows.loc[exact, ["estimate", "se"]], atol=EXACT
    )
    np.testing.assert_allclose(
        cells.loc[exact, ["lower", "upper", "df"]], rows.loc[exact, ["lower", "upper", "df"]], atol=EXACT
    )
    mixed = ~exact
    assert mixed.sum() == (0 if family == "bernoulli" else 2)
    np.testing.assert_allclose(cells.loc[mixed, "estimate"], rows.loc[mixed, "estimate"], atol=MIXED_EST)
    np.testing.assert_allclose(cells.loc[mixed, "se"], rows.loc[mixed, "se"], rtol=MIXED_SE)


@pytest.mark.parametrize("family", ["poisson", "negative_binomial"])
def test_count_cells_glm_exact_gee_close(family):
    rows, cells = compare(family)
    glm = rows.method == "glm_cluster_robust"
    np.testing.assert_allclose(
        cells.loc[glm, ["estimate", "se"]], rows.loc[glm, ["estimate", "se"]], atol=EXACT
    )
    gee = rows.method.str.endswith("_robust") & ~glm
    diff = (cells.loc[gee, "estimate"] - rows.loc[gee, "estimate"]).abs()
    assert (diff < COUNT_GEE_SE * rows.loc[gee, "se"]).all(), diff.to_numpy()
    assert np.isfinite(cells[["estimate", "se"]].to_numpy()).all()


def test_binomial_patients_with_trials_equal_their_bernoulli_rows():
    d = simulate("bernoulli", seed=9)
    grouped = d.groupby(["cluster", "period", "treated", "alignment_z"], as_index=False)
    per_patient = grouped.agg(y=("y", "sum"), n=("y", "size"))  # e.g. doses given of doses due
    a = cross_check(d.drop(columns="n"), "binomial", moderators=["alignment_z"], tol=1e-10)
    b = cross_check(per_patient, "binomial", moderators=["alignment_z"], tol=1e-10)
    np.testing.assert_allclose(b[["estimate", "se"]], a[["estimate", "se"]], atol=EXACT)


def test_cells_recover_a_known_effect():
    """Gaussian cells of 20-40 patients, 24 clusters: treatment 0.4, interaction 0.2, within 3 SE."""
    d = simulate("gaussian", seed=21, clusters=24, m=30)
    out = cross_check(to_cells(d, "gaussian"), "gaussian", moderators=["alignment_z"], level="cell")
    for method in ("mixedlm", "gee_nested_exchangeable_md", "glm_cluster_robust"):
        r = out[out.method == method].set_index("estimand")
        assert abs(r.loc["treatment_effect", "estimate"] - 0.4) < 3 * r.loc["treatment_effect", "se"]
        assert (
            abs(r.loc["alignment_interaction", "estimate"] - 0.2) < 3 * r.loc["alignment_interaction", "se"]
        )


def test_moderators_enter_as_main_effect_and_interaction():
    d = simulate("gaussian")
    d["fidelity_z"] = np.where(d.treated == 1, np.sin(d.period + d.cluster.str[1:].astype(int)), 0.0)
    for data, level in ((d, "row"), (to_cells(d, "gaussian").assign(fidelity_z=0.0), "cell")):
        des = build_design(data, "gaussian", moderators=["alignment_z", "fidelity_z"], level=level)
        cols = list(des.X.columns)
        assert {"alignment_z", "treated:alignment_z", "treated:fidelity_z"} <= set(cols)
        assert "fidelity_z" not in cols  # 0 off treatment: it is its own interaction
    out = cross_check(d, "gaussian", moderators=["alignment_z", "fidelity_z"])
    assert set(out.estimand) >= {"alignment_interaction", "fidelity_z_interaction"}
    assert np.isfinite(out.estimate).all()


def test_level_comes_from_the_recorded_table(tmp_path):
    assert recorded_level({"table": "patients"}, tmp_path) == "row"
    assert recorded_level({"table": "cluster_periods"}, tmp_path) == "cell"
    with pytest.raises(QialignError, match="re-run the prepare step"):
        recorded_level(json.loads('{"outcome": "y"}'), tmp_path)


def test_cell_errors_are_clear():
    cells = to_cells(simulate("gaussian"), "gaussian")
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['sd'\]"):
        cross_check(cells.drop(columns="sd"), "gaussian", level="cell")
    bad = to_cells(simulate("bernoulli"), "bernoulli")
    bad.loc[0, "y"] = bad.loc[0, "n"] + 1
    with pytest.raises(ValueError, match="0 <= events <= n"):
        cross_check(bad, "binomial", level="cell")
