"""Survey waves as labels through the whole workflow (latent alignment, fit, cross-check, report).

One tiny simulated trial with a two-wave survey, run twice: once with the simulator's integer waves
(``alignment.wave: 2``) and once with the wave column rewritten to ``baseline`` / ``follow-up``
(``alignment.waves: [baseline, follow-up]``, ``alignment.wave: follow-up``). The labels must reach
scores.csv, change.csv and alignment_draws.csv as text, and every number must equal the integer run's.
A third copy scores the follow-up wave de-biased, a fourth fits it with ``propagation: joint`` (the
survey's measurement model inside the outcome model) through the same steps to the report.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from tiny_project import tiny_project

pytestmark = pytest.mark.workflow

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
LABELS = {"1": "baseline", "2": "follow-up"}

TRIAL = {
    "title": "Tiny labelled-waves trial",
    "synthetic": True,
    "design": "stepped_wedge",
    "outcomes": {"incidents": {"family": "negative_binomial", "exposure": "bed_days", "better": "higher"}},
    "alignment": {
        "source": "survey",
        "roles": {"clinical": ["doctor", "nurse"], "managerial": ["matron"]},
        "domains": {"safety": ["q1", "q2", "q3"], "flow": ["q4", "q5", "q6"]},
        "method": "latent",
        "propagation": "draws",  # the fit reads the labelled alignment_draws.csv
        "draws": 3,
        "latent": {"chains": 2, "draws": 100, "tune": 100, "keep": 20},
    },
    "models": [{"id": "hh"}],
    "sampler": {"chains": 2, "draws": 100, "tune": 100},
    "diagnostics": {"retry": False},
    "robustness": {"enabled": False},  # the battery has its own tests (test_robustness*.py)
    "seed": 11,
}


def _trial(work: Path, data: Path, trial_id: str, survey: str, alignment: dict) -> None:
    cfg = {"id": trial_id, **TRIAL, "alignment": {**TRIAL["alignment"], **alignment}}
    cfg["data"] = {name: str(data / f"{name}.csv") for name in ("clusters", "patients", "cluster_periods")}
    cfg["data"]["survey"] = str(data / survey)
    (work / "config" / "trials" / f"{trial_id}.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))


@pytest.fixture(scope="module")
def run(tmp_path_factory, snakemake) -> dict:
    work = tmp_path_factory.mktemp("waves")
    spec = yaml.safe_load((ROOT / "tests" / "data" / "tiny_sim.yaml").read_text())
    spec["survey"]["waves"] = 2
    (work / "sim.yaml").write_text(yaml.safe_dump(spec))
    data = tiny_project(work, work / "sim.yaml")
    survey = pd.read_csv(data / "survey.csv", dtype={"wave": str})
    assert sorted(survey["wave"].unique()) == ["1", "2"]
    survey.assign(wave=survey["wave"].map(LABELS)).to_csv(data / "survey_labels.csv", index=False)
    (work / "config" / "trials").mkdir(parents=True)
    _trial(work, data, "ints", "survey.csv", {"wave": 2})
    _trial(
        work, data, "labels", "survey_labels.csv", {"waves": ["baseline", "follow-up"], "wave": "follow-up"}
    )
    debiased = {"waves": ["baseline", "follow-up"], "wave": "follow-up", "propagation": "plugin"}
    _trial(work, data, "debiased", "survey_labels.csv", {**debiased, "score": "debiased"})
    joint = {"waves": ["baseline", "follow-up"], "wave": "follow-up", "propagation": "joint"}
    _trial(work, data, "joint", "survey_labels.csv", joint)
    (work / "config" / "config.yaml").write_text("trials: [ints, labels, debiased, joint]\n")
    proc = snakemake(work)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return {"work": work}


def _csv(run: dict, trial: str, *parts: str) -> pd.DataFrame:
    return pd.read_csv(run["work"] / "results" / trial / Path(*parts), dtype={"wave": str, "cluster": str})


def test_scores_keep_the_labels(run):
    lab, ints = _csv(run, "labels", "alignment", "scores.csv"), _csv(run, "ints", "alignment", "scores.csv")
    # the order is recorded (wave_order) and the rows are written first wave first
    assert lab[["wave", "wave_order"]].drop_duplicates().values.tolist() == [
        ["baseline", 1],
        ["follow-up", 2],
    ]
    assert lab["cluster"].nunique() == 6 and len(lab) == 12
    assert ints[["wave", "wave_order"]].drop_duplicates().values.tolist() == [["1", 1], ["2", 2]]
    # the same survey, the same seed: the same posterior, whatever the waves are called
    np.testing.assert_array_equal(ints["wave"].map(LABELS), lab["wave"])
    for col in ("alignment", "alignment_sd", "lower", "upper"):
        np.testing.assert_array_equal(lab[col].to_numpy(), ints[col].to_numpy())
    draws = _csv(run, "labels", "alignment", "alignment_draws.csv")
    assert set(draws["wave"]) == {"baseline", "follow-up"}
    assert draws.groupby("wave")["wave_order"].unique().map(list).to_dict() == {
        "baseline": [1],
        "follow-up": [2],
    }


def test_change_is_follow_up_minus_baseline(run):
    scores = _csv(run, "labels", "alignment", "scores.csv").set_index(["wave", "cluster"])["alignment"]
    change = _csv(run, "labels", "alignment", "change.csv")
    assert (change["wave_from"] == "baseline").all() and (change["wave_to"] == "follow-up").all()
    assert (change["wave_to_order"] == 2).all() and len(change) == 6
    expected = scores["follow-up"].reindex(change["cluster"]) - scores["baseline"].reindex(change["cluster"])
    np.testing.assert_allclose(change["difference"], expected.to_numpy(), rtol=0, atol=1e-12)
    assert (change["lower"] <= change["difference"]).all() and (change["difference"] <= change["upper"]).all()
    assert np.abs(change["difference"]).max() > 0  # the waves differ: picking the wrong one shows


def test_fit_used_the_follow_up_wave(run):
    """propagation: draws refits at 3 evenly spaced kept draws of the follow-up wave; the posterior's
    alignment_z is their mean after standardising each over clusters."""
    draws = _csv(run, "labels", "alignment", "alignment_draws.csv")
    ce = _csv(run, "labels", "incidents", "hh", "cluster_effects.csv").set_index("cluster")

    def expected(wave: str) -> np.ndarray:
        at = draws[draws["wave"] == wave].pivot(index="draw", columns="cluster", values="alignment")
        at = at.reindex(columns=ce.index).to_numpy()
        pick = np.unique(np.linspace(0, len(at) - 1, 3).round().astype(int))
        z = (at[pick] - at[pick].mean(axis=1, keepdims=True)) / at[pick].std(axis=1, ddof=1, keepdims=True)
        return z.mean(axis=0)

    np.testing.assert_allclose(ce["alignment_z"], expected("follow-up"), rtol=0, atol=1e-9)
    assert np.abs(ce["alignment_z"] - expected("baseline")).max() > 0.05
    fit = json.loads((run["work"] / "results" / "labels" / "incidents" / "hh" / "fit.json").read_text())
    assert fit["alignment_propagation"] == "draws" and fit["alignment_refits"] == 3
    # and the integer copy with wave: 2 gives identical estimates (Bayesian and cross-checks)
    cols = ["outcome", "model", "method", "estimand", "estimate", "lower", "upper"]
    lab = _csv(run, "labels", "estimates.csv")[cols]
    ints = _csv(run, "ints", "estimates.csv")[cols]
    assert "alignment_interaction" in set(lab["estimand"])
    pd.testing.assert_frame_equal(lab, ints)


def test_debiased_latent_score_moderates_the_effect(run):
    """``score: debiased`` with the latent method: the fit's alignment_z is the follow-up wave's
    alignment_debiased (-sqrt(mean (E gap)²)) standardised over clusters, not the plain score."""
    from qialign.alignment.descriptive import standardise_over_clusters

    scores = _csv(run, "debiased", "alignment", "scores.csv")
    at = scores[scores["wave"] == "follow-up"].set_index("cluster")
    ce = _csv(run, "debiased", "incidents", "hh", "cluster_effects.csv").set_index("cluster")
    z = standardise_over_clusters(at["alignment_debiased"].reindex(ce.index).to_numpy(float))
    np.testing.assert_allclose(ce["alignment_z"], z, rtol=0, atol=1e-9)
    assert (at["alignment_debiased"] >= at["alignment"]).all()  # the noise no longer counts as a gap
    plain = standardise_over_clusters(at["alignment"].reindex(ce.index).to_numpy(float))
    assert np.abs(ce["alignment_z"] - plain).max() > 1e-3


def test_report_renders_the_labels(run):
    page = (run["work"] / "reports" / "labels" / "report.html").read_text()
    assert 'id="alignment"' in page
    assert "wave follow-up moderates the effect" in page
    section = page[page.index('id="alignment"') :]
    assert "baseline" in section and section.index("<td>baseline</td>") < section.index("<td>follow-up</td>")


def test_joint_propagation_fits_the_labelled_wave_to_the_report(run):
    """``propagation: joint`` runs through fit, estimates and report (it once crashed after sampling:
    the latent cutpoints' initial values broke PyMC's model copy in compute_log_prior); the fit
    records joint, its alignment is the survey model's (standardised per draw, so its cluster
    means have mean 0), and gamma is reported with its own interval."""
    work = run["work"] / "results" / "joint"
    fit = json.loads((work / "incidents" / "hh" / "fit.json").read_text())
    assert fit["alignment_propagation"] == "joint"
    ce = _csv(run, "joint", "incidents", "hh", "cluster_effects.csv")
    assert abs(ce["alignment_z"].mean()) < 1e-9 and ce["alignment_z"].std() > 0.1
    est = _csv(run, "joint", "estimates.csv").set_index(["method", "estimand"])
    gamma = est.loc[("bayes_joint", "alignment_interaction")]
    assert gamma["lower"] < gamma["estimate"] < gamma["upper"]
    # the cell predictions (computed from the draws after sampling) carry each draw's latent
    # alignment: as assigned = fully with the intervention where treated (step exposure), = without
    # where not; with the plugin alignment instead, the treated rows would differ
    cf = _csv(run, "joint", "incidents", "hh", "counterfactual.csv")
    for treated, other in ((1, "with"), (0, "without")):
        rows = cf[cf["treated"] == treated]
        assert len(rows) > 0
        np.testing.assert_allclose(rows["actual_mean"], rows[f"{other}_mean"], rtol=1e-9)
    assert (run["work"] / "reports" / "joint" / "report.html").exists()
