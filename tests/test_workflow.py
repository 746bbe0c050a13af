"""The Snakemake workflow end to end on a tiny simulated trial, in a temporary copy of the project.

One module fixture runs the workflow (interrupted mid-fit, then resumed); the tests then check its
outputs and what a second run, a config edit and a code edit would re-run.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pandas as pd
import pytest
import yaml

from qialign.data.io import read_results_csv
from qialign.families import FAMILIES
from qialign.methods import METHODS, label
from qialign.results import (
    APPROACHES,
    CONDITIONINGS,
    ESTIMATE_COLUMNS,
    PA_ODDS_RATIO,
    POPULATIONS,
    SCALES,
    interval_label,
)
from tiny_project import tiny_project

pytestmark = pytest.mark.workflow

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SNAKEMAKE = BIN / "snakemake"

TRIAL = {
    "title": "Tiny workflow-test trial",
    "synthetic": True,
    "design": "stepped_wedge",
    "outcomes": {
        "y_bin": {"family": "bernoulli", "better": "lower"},
        "incidents": {"family": "negative_binomial", "exposure": "bed_days", "better": "higher"},
    },
    "alignment": {
        "source": "survey",
        "roles": {"clinical": ["doctor", "nurse"], "managerial": ["matron"]},
        "domains": {"safety": ["q1", "q2", "q3"], "flow": ["q4", "q5", "q6"]},
    },
    "models": [{"id": "hh"}],
    "sampler": {"chains": 2, "draws": 150, "tune": 150},
    "diagnostics": {"retry": False},
    # a one-variant battery (the default one is tested in test_robustness_*.py)
    "robustness": {"aspects": ["transition"], "permutations": 99},
    "seed": 11,
}


# the second trial scores alignment with the latent model and carries its uncertainty (draws)
LATENT_DRAWS = {
    "method": "latent",
    "propagation": "draws",
    "draws": 3,
    "latent": {"chains": 2, "draws": 100, "tune": 100, "keep": 20},
}


def _trial_config(
    workdir: Path,
    trial_id: str,
    data: Path,
    outcomes: tuple[str, ...],
    alignment: dict | None = None,
    robustness: bool = True,
) -> Path:
    cfg = {"id": trial_id, **TRIAL}
    if not robustness:
        cfg["robustness"] = {"enabled": False}
    cfg["alignment"] = {**TRIAL["alignment"], **(alignment or {})}
    cfg["outcomes"] = {name: TRIAL["outcomes"][name] for name in outcomes}
    cfg["data"] = {
        name: str(data / f"{name}.csv") for name in ("clusters", "patients", "cluster_periods", "survey")
    }
    path = workdir / "config" / "trials" / f"{trial_id}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


# both trials' incidents pooled (log rate ratio), a small synthesis sampler
SYNTHESIS = """synthesis:
  trials: {tiny_a: {outcome: incidents}, tiny_b: {outcome: incidents}}
  scale: log_rr
  sampler: {chains: 2, draws: 300, tune: 300}
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory, venv_env, snakemake) -> dict:
    """A copy of the workflow with two tiny trials; run once, interrupted in a fit, then resumed."""
    work = tmp_path_factory.mktemp("project")
    data = tiny_project(work)
    (work / "config" / "trials").mkdir(parents=True)
    _trial_config(work, "tiny_a", data, ("y_bin", "incidents"))
    _trial_config(
        work, "tiny_b", data, ("incidents",), LATENT_DRAWS, robustness=False
    )  # a second, cheaper trial
    (work / "config" / "config.yaml").write_text("trials: [tiny_a, tiny_b]\n" + SYNTHESIS)

    # start, wait until a fit is sampling, interrupt the whole run, then resume
    proc = subprocess.Popen(
        [str(SNAKEMAKE), "--cores", "2"], cwd=work, env=venv_env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    deadline = time.time() + 300
    fit_logs = work / "results" / "tiny_a" / "logs"
    while time.time() < deadline and proc.poll() is None:
        if any("fitting" in p.read_text() for p in fit_logs.glob("fit_*.log")):
            break
        time.sleep(0.5)
    interrupted = proc.poll() is None
    if interrupted:
        os.killpg(proc.pid, signal.SIGINT)
    try:
        first, _ = proc.communicate(timeout=180)
    except subprocess.TimeoutExpired:  # a job deaf to SIGINT (numba compiling under load): a crash
        os.killpg(proc.pid, signal.SIGKILL)
        first, _ = proc.communicate(timeout=60)
        snakemake(work, "--unlock")  # a killed run leaves its lock behind
    resumed = snakemake(work)
    terminal = (first or "") + resumed.stdout + resumed.stderr  # what both runs showed the user
    return {"work": work, "data": data, "interrupted": interrupted, "resumed": resumed, "terminal": terminal}


def test_interrupted_run_resumes_to_completion(project):
    assert project["interrupted"], "the run finished before a fit started: nothing was interrupted"
    run = project["resumed"]
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    # each long step tells the terminal what runs and how long it took (its details stay in its log)
    terminal = project["terminal"]
    assert "▶ report tiny_a: started; " in terminal and "✓ report tiny_a: done in " in terminal
    assert "▶ fit tiny_a / y_bin / " in terminal and "fitting " in terminal
    log = (project["work"] / "results" / "tiny_a" / "logs" / "report.log").read_text()
    assert "✓ report tiny_a: done in " in log


def test_outputs_and_numbers(project):
    work, data = project["work"], project["data"]
    est = pd.read_csv(work / "results" / "tiny_a" / "estimates.csv")
    assert list(est.columns) == list(ESTIMATE_COLUMNS)
    assert set(est["outcome"]) == {"y_bin", "incidents"}
    assert {"bayes", "gee_nested_exchangeable_md", "glm_cluster_robust"} <= set(est["method"])
    truth = json.loads((data / "truth.json").read_text())["outcomes"]
    bayes = est[(est["method"] == "bayes") & (est["model"] == "hh")].set_index(["outcome", "estimand"])
    for outcome in ("y_bin", "incidents"):
        row = bayes.loc[(outcome, "treatment_effect")]
        assert row["lower"] < truth[outcome]["treatment_effect"] < row["upper"]
        assert row["upper"] - row["lower"] < 3.0
        p = bayes.loc[(outcome, "prob_beats_trend"), "estimate"]
        assert 0.0 <= p <= 1.0
    # natural scale is exp(link) for the log and logit links (an equal-tailed interval maps exactly)
    for outcome in ("y_bin", "incidents"):
        link = bayes.loc[(outcome, "treatment_effect")]
        natural = bayes.loc[(outcome, "treatment_effect_natural")]
        assert natural["lower"] == pytest.approx(math.exp(link["lower"]), rel=1e-3)
        assert natural["upper"] == pytest.approx(math.exp(link["upper"]), rel=1e-3)
    # the posterior carries provenance
    from qialign.inference.posterior_io import load_posterior

    _, attrs = load_posterior(work / "results" / "tiny_a" / "y_bin" / "hh" / "posterior.nc")
    assert attrs["seed"] > 0 and attrs["trial"] == "tiny_a"
    assert len(attrs["data"]["patients"]["sha256"]) == 64
    assert attrs["versions"]["pymc"].startswith("6.")
    fit = json.loads((work / "results" / "tiny_a" / "y_bin" / "hh" / "fit.json").read_text())
    assert fit["timings"]["sample_s"] > 0


def test_robustness_variants_run_as_fits_and_reach_estimates_and_report(project):
    """The battery's variant is its own fit job; its rows reach estimates.csv under its own model
    id; the robustness step's files and the report's Robustness section exist (tiny_b: off)."""
    work = project["work"]
    est = read_results_csv(work / "results" / "tiny_a" / "estimates.csv")
    variant = est[est["model"] == "hh_transition_excluded"]
    assert set(variant["outcome"]) == {"y_bin"} and set(variant["method"]) == {"bayes"}
    assert "treatment_effect" in set(variant["estimand"])
    folder = work / "results" / "tiny_a" / "y_bin" / "robustness"
    verdict = json.loads((folder / "verdict.json").read_text())
    variants = read_results_csv(folder / "variants.csv")
    assert set(variants["model"]) == {"hh", "hh_transition_excluded"}
    inference = read_results_csv(folder / "inference.csv").set_index("check")
    assert (
        0 < inference.loc["permutation", "p_value"] <= 1
        and inference.loc["permutation", "assignments"] == 100
    )
    page = (work / "reports" / "tiny_a" / "report.html").read_text()
    assert 'id="robustness"' in page and verdict["text"].split(":")[0] in page
    assert not (work / "results" / "tiny_b" / "incidents" / "robustness").exists()
    assert "robustness battery is off" in (work / "reports" / "tiny_b" / "report.html").read_text()


@pytest.mark.parametrize("trial", ["tiny_a", "tiny_b"])
def test_estimates_speak_one_vocabulary(project, trial):
    """Every scale, interval, method and approach of the real estimates.csv is the registries'; one
    reference cross-check per outcome x estimand; comparable_to names a Bayesian estimand of the fitted
    primary model (a GEE odds ratio: the population-averaged one), and the report quotes the pair."""
    work = project["work"]
    est = read_results_csv(work / "results" / trial / "estimates.csv")
    cfg = yaml.safe_load((work / "config" / "trials" / f"{trial}.yaml").read_text())
    assert set(est["scale"]) <= set(SCALES)
    assert set(est["approach"]) == set(APPROACHES)
    assert all(METHODS[m].approach == a for m, a in zip(est["method"], est["approach"], strict=True))
    bayes, freq = est[est["approach"] == "bayesian"], est[est["approach"] == "frequentist"]
    assert set(bayes["interval"].fillna("")) == {interval_label(0.95, "eti"), ""}
    assert set(freq["interval"]) == {interval_label(0.95, "ci")}
    fitted = {m["id"] for m in cfg["models"]}
    assert set(freq["model"]) == {cfg["models"][0]["id"]} <= fitted
    assert bayes["comparable_to"].isna().all() and not bayes["reference"].any()
    assert set(est["conditioning"].fillna("")) <= set(CONDITIONINGS)
    assert set(est["population"].fillna("")) <= set(POPULATIONS)
    for (outcome, model), g in freq.groupby(["outcome", "model"]):
        own = bayes[(bayes["outcome"] == outcome) & (bayes["model"] == model)]
        assert set(g["comparable_to"].dropna()) <= set(own["estimand"])
    # the families' own scale names, for the same estimand in both approaches
    for outcome, spec in cfg["outcomes"].items():
        fam = FAMILIES[spec["family"]]
        for approach in APPROACHES:
            rows = est[(est["outcome"] == outcome) & (est["approach"] == approach)].set_index("estimand")
            assert set(rows.loc[["treatment_effect"], "scale"]) == {fam.link_scale}
            assert set(rows.loc[["treatment_effect_natural"], "scale"]) == {fam.natural_scale}
    refs = freq.groupby(["outcome", "estimand"])["reference"].sum()
    assert (refs == 1).all(), refs[refs != 1]
    ref = freq[freq["reference"]].set_index(["outcome", "estimand"])
    assert set(ref["method"]) == {"gee_nested_exchangeable_md"}  # first of REFERENCE_CROSSCHECKS
    # the report quotes that row and names its method
    page = (work / "reports" / trial / "report.html").read_text()
    assert f"frequentist cross-check ({label('gee_nested_exchangeable_md')})" in page
    for outcome, spec in cfg["outcomes"].items():
        if FAMILIES[spec["family"]].kind == "binary":
            assert ref.loc[(outcome, "treatment_effect_natural"), "comparable_to"] == PA_ODDS_RATIO


def test_latent_alignment_draws_propagation(project):
    """tiny_b: latent scores, 3 alignment draws refitted and pooled, said so in estimates and report."""
    work = project["work"]
    draws = pd.read_csv(work / "results" / "tiny_b" / "alignment" / "alignment_draws.csv")
    assert draws["draw"].nunique() == 20 and draws["cluster"].nunique() == 6
    est = pd.read_csv(work / "results" / "tiny_b" / "estimates.csv")
    bayes = est[est["method"].str.startswith("bayes")]
    assert set(bayes["method"]) == {"bayes_draws"}
    assert "alignment_interaction" in set(bayes["estimand"])
    fit = json.loads((work / "results" / "tiny_b" / "incidents" / "hh" / "fit.json").read_text())
    assert fit["alignment_propagation"] == "draws" and fit["alignment_refits"] == 3
    from qialign.inference.posterior_io import load_posterior

    idata, _ = load_posterior(work / "results" / "tiny_b" / "incidents" / "hh" / "posterior.nc")
    assert idata["posterior"].sizes["chain"] == 3 * 2
    assert "alignment_z" in idata["posterior"]
    page = (work / "reports" / "tiny_b" / "report.html").read_text()
    assert "Propagation <strong>draws</strong>" in page


def test_second_run_does_nothing(project, snakemake):
    dry = snakemake(project["work"], "-n")
    assert dry.returncode == 0, dry.stderr
    assert "Nothing to be done" in dry.stdout + dry.stderr


def test_config_edit_reruns_only_that_trial(project, snakemake):
    work = project["work"]
    cfg = work / "config" / "trials" / "tiny_b.yaml"
    time.sleep(1.1)
    cfg.write_text(cfg.read_text().replace("Tiny workflow-test trial", "Tiny trial, retitled"))
    dry = snakemake(work, "-n")
    assert dry.returncode == 0, dry.stderr
    outputs = [line for line in dry.stdout.splitlines() if line.strip().startswith("output:")]
    assert any("results/tiny_b/" in line for line in outputs)
    assert not any("results/tiny_a/" in line for line in outputs)


def test_inference_code_edit_replans_the_fits(project, snakemake):
    """An edit to a module the fit step imports only through the sampler (qialign.inference)
    re-plans every fit (its code hash changed), not the data steps."""
    work = project["work"]
    sampling = work / "src" / "qialign" / "inference" / "sampling.py"
    sampling.write_text(sampling.read_text() + "\n# edited\n")
    dry = snakemake(work, "-n")
    assert dry.returncode == 0, dry.stderr
    outputs = [line for line in dry.stdout.splitlines() if line.strip().startswith("output:")]
    assert "params have changed" in dry.stdout
    assert any("results/tiny_a/y_bin/hh/posterior.nc" in line for line in outputs), dry.stdout[-4000:]
    assert not any("results/tiny_a/y_bin/cells.parquet" in line for line in outputs)


def test_model_code_edit_reruns_fits(project, snakemake):
    work = project["work"]
    build = work / "src" / "qialign" / "models" / "build.py"
    build.write_text(build.read_text() + "\n# edited\n")
    dry = snakemake(work, "-n")
    out = dry.stdout
    assert dry.returncode == 0, dry.stderr
    assert "params have changed" in out
    outputs = [line for line in out.splitlines() if line.strip().startswith("output:")]
    assert any("results/tiny_a/y_bin/hh/posterior.nc" in line for line in outputs), out[-4000:]
    # the data code is untouched: tiny_a's prepared tables are not re-made (tiny_b's config was edited)
    assert not any("results/tiny_a/y_bin/cells.parquet" in line for line in outputs)


def test_report_pages_and_snakemake_report(project, snakemake):
    work = project["work"]
    page = (work / "reports" / "tiny_a" / "report.html").read_text()
    for section in ("summary", "design", "effects", "alignment", "model-checks", "provenance"):
        assert f'id="{section}"' in page
    assert "SYNTHETIC" in page
    bundle = snakemake(work, "--report", "snakemake_report.zip")
    assert bundle.returncode == 0, bundle.stderr[-3000:]
    names = zipfile.ZipFile(work / "snakemake_report.zip").namelist()
    # the bundle holds Snakemake's index page, both trials' reports and the synthesis's (hashed folders)
    assert "snakemake_report/report.html" in names
    assert sum(n.endswith("/report.html") and "/data/raw/" in n for n in names) == 3


def test_synthesis_through_the_workflow(project):
    """The synthesis rule ran in the default target: its estimates speak the results vocabulary,
    it pooled the treated wards of both trials, and its page has every section and figure."""
    work = project["work"]
    est = read_results_csv(work / "results" / "synthesis" / "estimates.csv")
    assert list(est.columns) == list(ESTIMATE_COLUMNS)
    assert set(est["method"]) == {"bayes_synthesis", "meta_regression_reml_kh"}
    assert all(METHODS[m].approach == a for m, a in zip(est["method"], est["approach"], strict=True))
    assert set(est["scale"]) <= set(SCALES) and "log-rate" in set(est["scale"])
    bayes = est[est["approach"] == "bayesian"].set_index("estimand")
    for name in ("pooled_effect", "alignment_slope", "variance_explained", "predicted_effect_q50"):
        assert bayes.loc[name, "lower"] < bayes.loc[name, "estimate"] < bayes.loc[name, "upper"]
    assert 0 <= bayes.loc["prob_beats_trend_top_quartile", "estimate"] <= 1
    wards = read_results_csv(work / "results" / "synthesis" / "wards.csv")
    assert len(wards) == 12 and set(wards["trial"]) == {"tiny_a", "tiny_b"}
    record = json.loads((work / "results" / "synthesis" / "synthesis.json").read_text())
    assert [t["trial"] for t in record["trials"]] == ["tiny_a", "tiny_b"]
    assert all(len(f["sha256"]) == 64 for t in record["trials"] for f in t["files"].values())
    page = (work / "reports" / "synthesis" / "report.html").read_text()
    for section in ("summary", "forest", "alignment", "heterogeneity", "methods", "provenance", "logs"):
        assert f'id="{section}"' in page
    assert page.count('src="data:image/png;base64,') == 2 and "common scale" in page
    assert "PSIS-LOO" not in page  # the attention box speaks of the synthesis, not of a trial's LOO


def test_within_trial_alignment_says_the_slope_is_within_trial(project, tmp_path):
    """The same fits pooled with alignment standardised within each trial: the model id and the page
    say the slope is within-trial."""
    from qialign.report.synthesis_page import render_synthesis_report
    from qialign.steps.synthesis import synthesis_step

    work = project["work"]
    config = yaml.safe_load((work / "config" / "config.yaml").read_text())
    config["synthesis"]["alignment"] = "within"
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    synthesis_step(path, work / "config" / "trials", work / "results", tmp_path / "out")
    est = read_results_csv(tmp_path / "out" / "estimates.csv")
    assert set(est["model"]) == {"synthesis_within"}
    render_synthesis_report(tmp_path / "out", tmp_path / "report.html")
    page = (tmp_path / "report.html").read_text()
    assert "The alignment slope is <strong>within-trial</strong>" in page
    assert "per within-trial SD of alignment" in page


@pytest.mark.browser
def test_synthesis_page_in_headless_chromium(project, tmp_path):
    """The synthesis page loads in a browser with both figures decoded and every section present."""
    from qialign.report.synthesis_page import SECTION_IDS

    CHROMIUM = next((p for p in ("/usr/bin/chromium", "/usr/bin/chromium-browser") if Path(p).exists()), None)
    if CHROMIUM is None:
        pytest.skip("chromium not installed: apt-get install chromium")
    url = (project["work"] / "reports" / "synthesis" / "report.html").resolve().as_uri()
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--virtual-time-budget=5000"]
    dom = subprocess.run(
        [CHROMIUM, *flags, f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", url],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert 'data-images-ok="2/2"' in dom.stdout
    for sid in SECTION_IDS:
        assert f'id="{sid}"' in dom.stdout
