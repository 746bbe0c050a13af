"""The shipped default trial re-expressed as cluster_periods only, through the whole workflow.

A QI programme's export: events and trials for the binary outcome, log-scale means and SDs of
length of stay, incident counts with bed-days; no patient rows. Analysed beside the same patients
(without covariates, which cells of a ward-month cannot carry), both trials go through every rule
to their reports. The cells the models use are the same sufficient statistics (to rounding), so the
Bayesian estimates agree within Monte Carlo error and the cross-checks to 1e-8.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from tiny_project import copy_project

pytestmark = pytest.mark.workflow

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DATA = ROOT / "resources" / "headsup_synthetic"
OUTCOMES = ("excess_los", "los_days")  # compared; the cells trial also runs its incident counts
TRIALS = ("hs_rows", "hs_cells")


def _cells(patients: pd.DataFrame, counts: pd.DataFrame) -> pd.DataFrame:
    g = patients.assign(log_los=np.log(patients["los_days"])).groupby(["cluster", "period"], as_index=False)
    cells = g.agg(
        n=("excess_los", "size"),
        excess_los=("excess_los", "sum"),
        los_days_mean=("log_los", "mean"),
        los_days_sd=("log_los", "std"),
    )
    return cells.merge(counts.drop(columns="n"), on=["cluster", "period"], how="outer")


def _trial(trial: str, data: dict) -> dict:
    base = yaml.safe_load((ROOT / "config/trials/headsup_synthetic.yaml").read_text())
    names = OUTCOMES + (("incidents",) if trial == "hs_cells" else ())
    outcomes = {k: base["outcomes"][k] for k in names}
    keep = ("title", "synthetic", "design", "alignment", "models", "seed")
    cfg = {k: base[k] for k in keep} | {"id": trial, "data": data, "outcomes": outcomes}
    cfg["title"] = f"{trial}: " + cfg["title"]
    return cfg | {
        "sampler": {"chains": 2, "draws": 300, "tune": 300},
        "diagnostics": {"retry": False},
        "robustness": {"enabled": False},
    }


@pytest.fixture(scope="module")
def runs(tmp_path_factory, snakemake):
    work = tmp_path_factory.mktemp("default_cells")
    copy_project(work)
    patients = pd.read_csv(DATA / "patients.csv", dtype={"cluster": str})
    counts = pd.read_csv(DATA / "cluster_periods.csv", dtype={"cluster": str})
    data = work / "data"
    data.mkdir()
    _cells(patients, counts).to_csv(data / "cells.csv", index=False, float_format="%.17g")
    common = {"clusters": str(DATA / "clusters.csv"), "survey": str(DATA / "survey.csv")}
    rows = {
        **common,
        "patients": str(DATA / "patients.csv"),
    }
    (work / "config" / "trials").mkdir(parents=True)
    for trial, tables in (
        ("hs_rows", rows),
        ("hs_cells", {**common, "cluster_periods": str(data / "cells.csv")}),
    ):
        text = yaml.safe_dump(_trial(trial, tables), sort_keys=False)
        (work / "config" / "trials" / f"{trial}.yaml").write_text(text)
    (work / "config" / "config.yaml").write_text(
        f"trials: [{', '.join(TRIALS)}]\ntrials_dir: config/trials\n"
    )
    run = snakemake(work)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return work


def _read(work: Path, trial: str, *parts: str) -> pd.DataFrame:
    return pd.read_csv(work / "results" / trial / Path(*parts))


def test_both_shapes_reach_their_reports(runs):
    for trial in TRIALS:
        assert (runs / "reports" / trial / "report.html").stat().st_size > 10_000
    counts = _read(runs, "hs_cells", "incidents", "hh", "estimates.csv").set_index("estimand")
    assert np.isfinite(counts.loc[["treatment_effect", "phi"], "estimate"]).all()  # per-cell NB ran


@pytest.mark.parametrize("outcome", OUTCOMES)
def test_models_see_the_same_sufficient_statistics(runs, outcome):
    cells = [pd.read_parquet(runs / "results" / t / outcome / "cells.parquet") for t in TRIALS]
    stats = [c for c in ("n", "events", "sum", "sumsq", "count", "exposure") if c in cells[0]]
    a, b = (c.sort_values(["cluster", "period"]).reset_index(drop=True) for c in cells)
    np.testing.assert_allclose(b[stats].to_numpy(float), a[stats].to_numpy(float), rtol=1e-9)


@pytest.mark.parametrize("outcome", OUTCOMES)
def test_bayesian_estimates_agree_within_monte_carlo_error(runs, outcome):
    est = [_read(runs, t, outcome, "hh", "estimates.csv").set_index("estimand") for t in TRIALS]
    for name in ("treatment_effect", "alignment_interaction", "alignment_main"):
        r, c = est[0].loc[name], est[1].loc[name]
        sd = (r["upper"] - r["lower"]) / 3.92
        mcse = sd * np.sqrt(1 / r["ess_bulk"] + 1 / c["ess_bulk"])
        assert abs(r["estimate"] - c["estimate"]) < 4 * mcse, (outcome, name, r["estimate"], c["estimate"])


@pytest.mark.parametrize("outcome", OUTCOMES)
def test_cross_checks_agree(runs, outcome):
    rows, cells = (_read(runs, t, outcome, "crosscheck.csv") for t in TRIALS)
    exact = ~rows["method"].eq("mixedlm")
    cols = ["estimate", "se", "lower", "upper"]
    np.testing.assert_allclose(cells.loc[exact, cols], rows.loc[exact, cols], rtol=1e-8, atol=1e-8)
    mixed = ~exact
    np.testing.assert_allclose(cells.loc[mixed, "estimate"], rows.loc[mixed, "estimate"], atol=1e-4)
