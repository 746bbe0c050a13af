"""Every family as patients and as cluster_periods cells, through the whole workflow (Snakemake's
default target: fits, cross-checks, LOO, reports).

One tiny stepped wedge (8 wards, 5 periods, ~30 patients per ward-period) is simulated with a
bernoulli, poisson, negative binomial, gaussian and lognormal outcome per patient; the test sums the
same patients into cluster_periods (events and n; counts and patient-days; ``<y>_mean``/``<y>_sd``,
log scale for lognormal) and analyses both shapes as two trials. Cells must reproduce the patients'
numbers: to 1e-8 for every GEE and the GLM of binomial/gaussian/lognormal outcomes and for the
count GLM; REML (cells) vs statsmodels (rows) within 1e-4 (estimates) and 0.1% (SEs); the count GEEs,
whose cells are their own units, within one robust SE. Every estimate is finite, and the simulated
treatment effect lies within 3 SE of the nested-exchangeable GEE (Mancl-DeRouen) in both shapes.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from qialign.families import FAMILIES as REGISTRY
from tiny_project import tiny_project

pytestmark = pytest.mark.workflow

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
FAMILIES = {
    "y_bin": "bernoulli",
    "y_cnt": "poisson",
    "y_nb": "negative_binomial",
    "y_gau": "gaussian",
    "y_los": "lognormal",
}
EXACT, MIXED_EST, MIXED_SE, COUNT_GEE_SE, RECOVERY_SE = 1e-8, 1e-4, 1e-3, 1.0, 3.0


def _spec(path: Path) -> Path:
    spec = yaml.safe_load((ROOT / "tests/data/tiny_sim.yaml").read_text())
    spec.update(periods=5, clusters_per_site=[4, 4], patients={"per_period": 30})
    spec["schedule"] = {"baseline": 1, "every": 1, "per_step": 2}
    common = {"trend": {"type": "linear", "slope": -0.02}, "sd_cluster": 0.2, "sd_cluster_period": 0.1}
    common |= {"alignment_interaction": -0.1, "betas": {}}
    spec["outcomes"] = {
        "y_bin": {"family": "bernoulli", "baseline": 0.3, "treatment_effect": -0.4, **common},
        "y_cnt": {"family": "poisson", "baseline": 2.0, "treatment_effect": 0.3, **common},
        "y_nb": {"family": "negative_binomial", "baseline": 2.0, "phi": 5, "treatment_effect": 0.3, **common},
        "y_gau": {"family": "gaussian", "baseline": 0.0, "sigma": 1.0, "treatment_effect": 0.5, **common},
        "y_los": {"family": "lognormal", "baseline": 5.0, "sigma": 0.6, "treatment_effect": -0.2, **common},
    }
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def _cells(patients: pd.DataFrame) -> pd.DataFrame:
    """The patients as a cluster_periods table (what a QI export gives)."""
    g = patients.assign(y_los_log=np.log(patients["y_los"]), one=1).groupby(
        ["cluster", "period"], as_index=False
    )
    cells = g.agg(
        n=("one", "size"), y_bin=("y_bin", "sum"), y_cnt=("y_cnt", "sum"), y_nb=("y_nb", "sum"),
        y_gau_mean=("y_gau", "mean"), y_gau_sd=("y_gau", "std"),
        y_los_mean=("y_los_log", "mean"), y_los_sd=("y_los_log", "std"),
    )  # fmt: skip
    cells["pt_days"] = cells["n"].astype(float)
    return cells


def _trial(work: Path, trial: str, data: dict, exposure: bool) -> None:
    outcomes = {}
    for name, family in FAMILIES.items():
        outcomes[name] = {"family": family}
        if exposure and family in ("poisson", "negative_binomial"):
            outcomes[name]["exposure"] = "pt_days"
    cfg = {
        "id": trial, "synthetic": True, "design": "stepped_wedge", "data": data, "outcomes": outcomes,
        "alignment": {
            "source": "survey",
            "roles": {"clinical": ["doctor", "nurse"], "managerial": ["matron"]},
            "domains": {"safety": ["q1", "q2", "q3"], "flow": ["q4", "q5", "q6"]},
        },
        "models": [{"id": "hh"}], "seed": 5, "robustness": {"enabled": False},
        "sampler": {"chains": 2, "draws": 200, "tune": 200}, "diagnostics": {"retry": False},
    }  # fmt: skip
    (work / "config" / "trials" / f"{trial}.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))


@pytest.fixture(scope="module")
def shapes(tmp_path_factory, snakemake) -> dict:
    work = tmp_path_factory.mktemp("shapes")
    data = tiny_project(work, _spec(work / "shapes_sim.yaml"))
    patients = pd.read_csv(data / "patients.csv")
    _cells(patients).to_csv(data / "cluster_periods.csv", index=False)
    (work / "config" / "trials").mkdir(parents=True)
    common = {"clusters": str(data / "clusters.csv"), "survey": str(data / "survey.csv")}
    _trial(work, "shape_rows", {**common, "patients": str(data / "patients.csv")}, exposure=False)
    _trial(work, "shape_cells", {**common, "cluster_periods": str(data / "cluster_periods.csv")}, True)
    (work / "config" / "config.yaml").write_text("trials: [shape_rows, shape_cells]\n")
    run = snakemake(work)
    return {"work": work, "run": run, "truth": json.loads((data / "truth.json").read_text())["outcomes"]}


def _table(shapes, trial, outcome) -> pd.DataFrame:
    t = pd.read_csv(shapes["work"] / "results" / trial / outcome / "crosscheck.csv")
    return t[t.estimand.isin(["treatment_effect", "alignment_interaction"])].reset_index(drop=True)


def test_both_shapes_run(shapes):
    run = shapes["run"]
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    for trial in ("shape_rows", "shape_cells"):
        for outcome in FAMILIES:
            record = json.loads((shapes["work"] / "results" / trial / outcome / "prepared.json").read_text())
            assert record["table"] == ("patients" if trial == "shape_rows" else "cluster_periods")


@pytest.mark.parametrize("outcome", list(FAMILIES))
def test_cells_agree_with_patients(shapes, outcome):
    rows, cells = _table(shapes, "shape_rows", outcome), _table(shapes, "shape_cells", outcome)
    assert list(rows.method) == list(cells.method) and list(rows.estimand) == list(cells.estimand)
    assert len(rows) >= 18 and {"alignment_interaction"} <= set(rows.estimand)
    assert np.isfinite(rows[["estimate", "se"]].to_numpy()).all()
    assert np.isfinite(cells[["estimate", "se"]].to_numpy()).all()
    counts = REGISTRY[FAMILIES[outcome]].kind == "count"
    glm = rows.method == "glm_cluster_robust"
    mixed = rows.method == "mixedlm"
    exact = glm if counts else ~mixed
    cols = ["estimate", "se", "lower", "upper"]
    np.testing.assert_allclose(cells.loc[exact, cols], rows.loc[exact, cols], atol=EXACT)
    if counts:
        gee = rows.method.str.startswith("gee") & rows.method.str.endswith("_robust")
        diff = (cells.loc[gee, "estimate"] - rows.loc[gee, "estimate"]).abs()
        assert (diff < COUNT_GEE_SE * rows.loc[gee, "se"]).all(), diff.to_numpy()
    assert mixed.any() == (REGISTRY[FAMILIES[outcome]].kind == "continuous")
    np.testing.assert_allclose(cells.loc[mixed, "estimate"], rows.loc[mixed, "estimate"], atol=MIXED_EST)
    np.testing.assert_allclose(cells.loc[mixed, "se"], rows.loc[mixed, "se"], rtol=MIXED_SE)


@pytest.mark.parametrize("trial", ["shape_rows", "shape_cells"])
def test_known_effect_recovered(shapes, trial):
    for outcome in FAMILIES:
        t = _table(shapes, trial, outcome).set_index(["method", "estimand"])
        r = t.loc[("gee_nested_exchangeable_md", "treatment_effect")]
        truth = shapes["truth"][outcome]["treatment_effect"]
        assert abs(r["estimate"] - truth) < RECOVERY_SE * r["se"], (outcome, r["estimate"], truth, r["se"])


@pytest.mark.parametrize("outcome", list(FAMILIES))
def test_bayesian_fits_of_both_shapes(shapes, outcome):
    """Both shapes reach a fit and a report; cells and rows give the model the same sufficient
    statistics (to rounding), so their posteriors agree within Monte Carlo error. Negative binomial
    counts differ by design: a cell's count carries its overdispersion at the cell (shape phi, no
    cluster-period effect) where patient rows carry it per patient (shape n phi)."""
    est = {}
    for trial in ("shape_rows", "shape_cells"):
        table = pd.read_csv(shapes["work"] / "results" / trial / outcome / "hh" / "estimates.csv")
        est[trial] = table.set_index("estimand").loc["treatment_effect"]
        assert (shapes["work"] / "reports" / trial / "report.html").is_file()
    r, c = est["shape_rows"], est["shape_cells"]
    assert np.isfinite([r["estimate"], c["estimate"]]).all()
    if FAMILIES[outcome] == "negative_binomial":
        return
    sd = (r["upper"] - r["lower"]) / 3.92
    assert abs(r["estimate"] - c["estimate"]) < 4 * sd * np.sqrt(1 / r["ess_bulk"] + 1 / c["ess_bulk"])
