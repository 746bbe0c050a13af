"""`qialign init`: a trial config drafted from the user's own files validates and runs with no edits."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from qialign.errors import QialignError
from qialign.init import _start_periods, detect_design, draft_config, guess_family
from tiny_project import copy_project

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
GEECRT = ROOT / "tests" / "data" / "geecrt" / "sampleSWCRTSmall.csv"
GEE_NESTED = -0.9942493  # geeCRT vignette: nested exchangeable GEE, treatment (tests/data/geecrt)


def test_family_guesses():
    rng = np.random.default_rng(1)
    assert guess_family(pd.Series([0, 1, 1, 0]), "patients", None, None)[0] == "bernoulli"
    n = pd.Series([20, 30, 25, 40])
    assert guess_family(pd.Series([3, 9, 0, 12]), "cluster_periods", None, n)[0] == "binomial"
    counts = pd.Series(rng.poisson(5, 50))
    assert guess_family(counts, "cluster_periods", "bed_days", pd.Series(200, index=counts.index))[0] == (
        "negative_binomial"
    )
    assert guess_family(pd.Series(rng.lognormal(1, 0.8, 200)), "patients", None, None)[0] == "lognormal"
    assert guess_family(pd.Series(rng.normal(0, 1, 200)), "patients", None, None)[0] == "gaussian"


def test_design_from_starts():
    assert detect_design(pd.Series([2, 3, 4, 5]))[0] == "stepped_wedge"
    assert detect_design(pd.Series([4, 4, None, None], dtype="Int64"))[0] == "controlled_before_after"
    assert detect_design(pd.Series([37]))[0] == "interrupted_time_series"
    with pytest.raises(QialignError, match="no cluster ever starts"):
        detect_design(pd.Series([None, None], dtype="Int64"))


def test_start_periods_from_a_treatment_column_and_switching_off_is_an_error():
    df = pd.DataFrame({"ward": ["a"] * 3 + ["b"] * 3, "month": [1, 2, 3] * 2, "tx": [0, 1, 1, 0, 0, 0]})
    cl = _start_periods(df, "ward", "month", "tx", "p.csv")
    starts = cl.set_index("cluster")["start_period"]
    assert starts["a"] == 2 and pd.isna(starts["b"])  # b never starts: a control
    df.loc[2, "tx"] = 0
    with pytest.raises(QialignError, match="switches off .* a at month 3"):
        _start_periods(df, "ward", "month", "tx", "p.csv")


def test_survey_roles_and_items_are_guessed():
    survey = ROOT / "resources" / "headsup_synthetic" / "survey.csv"
    text, _ = draft_config(
        "hs", patients=str(ROOT / "resources/headsup_synthetic/patients.csv"), survey=str(survey),
        clusters=str(ROOT / "resources/headsup_synthetic/clusters.csv"), out="x.yaml",
    )  # fmt: skip
    cfg = yaml.safe_load(text)
    assert cfg["alignment"]["roles"] == {
        "clinical": ["ahp", "doctor", "nurse"],
        "managerial": ["matron", "service_manager", "ward_manager"],
    }
    assert cfg["alignment"]["scale"] == {"min": 1, "max": 5}
    assert cfg["alignment"]["domains"]["all"][:3] == ["q1", "q2", "q3"]
    assert cfg["design"] == "stepped_wedge"


@pytest.mark.workflow
def test_drafted_configs_run_through_the_workflow(tmp_path, venv_env, snakemake):
    """geeCRT's small trial (integer ids, a 0/1 treatment column, no clusters file) and the Sicily
    series: init writes configs that run through snakemake as written, with the published answers."""
    copy_project(tmp_path)
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(GEECRT, data / "gee.csv")
    for f in ("series.csv", "clusters.csv"):
        shutil.copy(ROOT / "resources" / "sicily_its" / f, data / f)
    calls = [
        ["gee_small", "--patients", "data/gee.csv"],
        ["sicily", "--cluster-periods", "data/series.csv", "--clusters", "data/clusters.csv"],
    ]
    for call in calls:
        run = subprocess.run(
            [str(BIN / "qialign"), "init", *call], cwd=tmp_path, env=venv_env, capture_output=True, text=True
        )
        assert run.returncode == 0, run.stderr
        assert "next: review" in run.stdout
    for trial in ("gee_small", "sicily"):  # the battery has its own tests (test_robustness*.py)
        with (tmp_path / "config" / "trials" / f"{trial}.yaml").open("a") as f:
            f.write("robustness: {enabled: false}\n")
    (tmp_path / "config" / "config.yaml").write_text("trials: [gee_small, sicily]\n")
    run = snakemake(tmp_path)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    est = pd.read_csv(tmp_path / "results" / "gee_small" / "estimates.csv")
    gee = est[(est.outcome == "y_bin") & (est.method == "gee_nested_exchangeable_robust")]
    assert gee.loc[gee.estimand == "treatment_effect", "estimate"].item() == pytest.approx(
        GEE_NESTED, abs=1e-3
    )
    rr = pd.read_csv(tmp_path / "results" / "sicily" / "estimates.csv")
    rr = rr[(rr.method == "bayes") & (rr.estimand == "treatment_effect_natural")]
    assert 0.839 < rr["estimate"].item() < 0.933  # Lopez Bernal et al. 2017's 95% CI
    for trial in ("gee_small", "sicily"):
        assert (tmp_path / "reports" / trial / "report.html").is_file()
