"""The per-trial HTML report: sections, self-containment, numbers, suppression, robustness.

The fixture is a small simulated trial run through the real ``validate``, ``prepare`` and
``alignment`` steps; the model outputs (estimates, diagnostics, fit records, cluster effects,
counterfactual, PPC, LOO, cross-check) are written from code with the writers' columns, so the test
needs no sampling.
"""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from producer_columns import write_fit_file
from qialign.frequentist import COLUMNS as FREQ_COLUMNS
from qialign.models.estimands import estimand_kind
from qialign.report import SECTION_IDS, render_report
from qialign.report.tables import count, interval_label, num, percent, with_interval
from qialign.results import (
    EXPOSURE_EFFECT_COLUMNS,
    FIT_FILES,
    LOO_COLUMNS,
    FitRecord,
    bayesian_rows,
    frequentist_rows,
)
from qialign.steps.alignment import alignment_scores
from qialign.steps.prepare import prepare_outcome, validate_trial
from qialign.studies.simulate import simulate_trial

TRIAL = "tiny"
EST_COLUMNS = ["estimand", "scale", "estimate", "lower", "upper", "interval", "r_hat", "ess_bulk"]


def _sim_spec() -> dict:
    return {
        "design": "stepped_wedge",
        "periods": 6,
        "clusters_per_site": [2, 2],
        "schedule": {"baseline": 1, "every": 1, "per_step": 1},
        "patients": {"per_period": 9.0, "sd_log_cluster_size": 0.3},
        "survey": {
            "waves": 1,
            "roles": {
                "clinical": {"doctor": [3, 4], "nurse": [4, 6]},
                "managerial": {"ward_manager": [1, 1]},  # one manager per cluster: counts < 5
            },
            "domains": {"safety": 3, "flow": 3},
        },
        "outcomes": {
            "y": {"family": "bernoulli", "baseline": 0.3, "treatment_effect": -0.3},
            "cnt": {"family": "negative_binomial", "level": "cluster_period", "baseline": 8.0},
        },
    }


def _trial_config(data: Path, **over) -> dict:
    cfg = {
        "id": TRIAL,
        "title": "Tiny test trial",
        "synthetic": True,
        "design": "stepped_wedge",
        "data": {
            "clusters": str(data / "clusters.csv"),
            "patients": str(data / "patients.csv"),
            "cluster_periods": str(data / "cluster_periods.csv"),
            "survey": str(data / "survey.csv"),
        },
        "outcomes": {
            "y": {"family": "bernoulli", "better": "lower", "label": "Bad outcome"},
            "cnt": {
                "family": "negative_binomial",
                "exposure": "bed_days",
                "better": "higher",
                "models": ["main"],
            },
        },
        "covariates": ["age"],
        "alignment": {
            "source": "survey",
            "roles": {"clinical": ["doctor", "nurse"], "managerial": ["ward_manager"]},
            "domains": {"safety": ["q1", "q2", "q3"], "flow": ["q4", "q5", "q6"]},
            "method": "descriptive",
        },
        "models": [{"id": "main"}, {"id": "alt", "exposure": "eti", "random_treatment": True}],
        "seed": 7,
    }
    cfg.update(over)
    return cfg


def _fake_estimates(family: str, gamma: bool, rng) -> pd.DataFrame:
    link = {"bernoulli": "log-odds", "negative_binomial": "log-rate"}[family]
    natural = {"bernoulli": "odds ratio", "negative_binomial": "rate ratio"}[family]
    th, se = rng.normal(-0.2, 0.1), 0.15
    rows = [
        ["treatment_effect", link, th, th - 2 * se, th + 2 * se],
        [
            "treatment_effect_natural",
            natural,
            np.exp(th + se**2 / 2),
            np.exp(th - 2 * se),
            np.exp(th + 2 * se),
        ],
    ]
    if gamma:
        g = rng.normal(-0.3, 0.05)
        rows += [
            ["alignment_interaction", link, g, g - 0.2, g + 0.2],
            ["effect_low_alignment", link, th - 1.2 * g, th - 1.2 * g - 0.4, th - 1.2 * g + 0.4],
            ["effect_high_alignment", link, th + 1.1 * g, th + 1.1 * g - 0.4, th + 1.1 * g + 0.4],
        ]
    rows.append(["prob_beats_trend", "probability", 0.8731, np.nan, np.nan])
    rows.append(["marginal_difference", "risk difference", -0.0213, -0.0511, 0.0087])
    pa = np.exp(0.85 * np.array([th, th - 2 * se, th + 2 * se]))  # attenuated towards 1
    if family == "bernoulli":  # the population-averaged rows of a new cluster (models.marginal)
        rows += [["pa_difference", "risk difference", -0.0201, -0.0493, 0.0082]]
        rows += [["pa_ratio", "risk ratio", *(pa**0.9)], ["pa_odds_ratio", natural, *pa]]
    else:
        rows += [["pa_difference", "count per patient difference", -0.3, -0.9, 0.2]]
        rows += [["pa_ratio", natural, *pa]]
    rows.append(["sd_cluster", link, 0.21, 0.02, 0.55])
    rows.append(["icc", "latent", 0.031, 0.002, 0.09])
    out = pd.DataFrame(rows, columns=EST_COLUMNS[:5])
    out["interval"] = np.where(out["estimand"] == "prob_beats_trend", "", "eti95")
    out["r_hat"] = np.where(out["estimand"] == "prob_beats_trend", np.nan, 1.002)
    out["ess_bulk"] = np.where(out["estimand"] == "prob_beats_trend", np.nan, 1234.0)
    out["conditioning"], out["population"] = zip(*map(estimand_kind, out["estimand"]), strict=True)
    return out


def _write_model(folder: Path, cells: pd.DataFrame, family: str, eti: bool, reliable: bool, rng, gamma=True):
    folder.mkdir(parents=True, exist_ok=True)
    est = _fake_estimates(family, gamma, rng)
    # through the producer's own contract: the columns the fit step writes, no invented ones
    bayesian_rows(est, TRIAL, folder.parent.name, folder.name, "plugin").to_csv(
        folder / "estimates.csv", index=False
    )
    stat = "events" if family == "bernoulli" else "count"
    cp = cells.groupby(["cluster", "period"], as_index=False).agg(
        site=("site", "first"), treated=("treated", "max"), n=("n", "sum"), s=(stat, "sum")
    )
    cp["observed"] = cp["s"] / cp["n"]
    base = cp["observed"].mean()
    cf = cp[["cluster", "period", "treated", "n", "observed"]].copy()
    for name, shift in (("actual", 0.0), ("without", 0.02), ("with", -0.02)):
        m = base + shift * np.where(name == "actual", cp["treated"], 1)
        cf[f"{name}_mean"], cf[f"{name}_lower"], cf[f"{name}_upper"] = m, m * 0.8, m * 1.2
    cf["interval"] = "eti95"
    write_fit_file(cf, folder / FIT_FILES["counterfactual"], family)
    bp = cp.groupby("period", as_index=False)["n"].sum()
    bp["n_treated"] = (
        cp[cp["treated"] == 1].groupby("period")["n"].sum().reindex(bp["period"]).fillna(0).to_numpy()
    )
    bands = (("actual", 0.0), ("without", 0.02), ("with", -0.02), ("actual_treated", 0.0))
    bands += (("without_treated", 0.02), ("trend_link", 0.05), ("trend", 0.01))
    for name, shift in bands:
        bp[f"{name}_mean"], bp[f"{name}_lower"], bp[f"{name}_upper"] = base + shift, base * 0.9, base * 1.1
    bp["interval"] = "eti95"
    write_fit_file(bp, folder / FIT_FILES["counterfactual_by_period"], family)
    ppc = cells[["cluster", "period", "treated", "n"]].copy()
    ppc["observed_mean"] = cells[stat] / cells["n"]
    ppc["predicted_mean"] = base
    ppc["lower"], ppc["upper"] = 0.0, 1.0
    ppc["inside"] = True
    write_fit_file(ppc, folder / FIT_FILES["ppc"], family)
    clusters = sorted(cells["cluster"].astype(str).unique())
    z = np.linspace(-1.2, 1.2, len(clusters))
    th = est.set_index("estimand").loc["treatment_effect", "estimate"]
    ce = pd.DataFrame(
        {
            "cluster": clusters,
            "site": [cells.loc[cells["cluster"] == c, "site"].iloc[0] for c in clusters],
            "alignment": 0.5 + 0.1 * z,
            "alignment_z": z,
            "scale": est["scale"].iloc[0],
            "estimate": th - 0.3 * z,
            "lower": th - 0.3 * z - 0.5,
            "upper": th - 0.3 * z + 0.5,
            "interval": "eti95",
            "natural_scale": est["scale"].iloc[1],
        }
    )
    for c in ("estimate", "lower", "upper"):
        ce[f"natural_{c}"] = np.exp(ce[c])
    write_fit_file(ce, folder / FIT_FILES["effects"], family)
    e = np.arange(1, 5)  # exposure_effects.csv with the fit step's columns
    ex = pd.DataFrame({"exposure_time": e, "scale": est["scale"].iloc[0], "estimate": th - 0.05 * e})
    ex["lower"], ex["upper"], ex["natural_scale"] = (
        ex["estimate"] - 0.4,
        ex["estimate"] + 0.4,
        est["scale"].iloc[1],
    )
    for c in ("estimate", "lower", "upper"):
        ex[f"natural_{c}"] = np.exp(ex[c])
    ex["interval"] = "eti95"
    write_fit_file(ex[list(EXPOSURE_EFFECT_COLUMNS)], folder / FIT_FILES["exposure_effects"], family)
    # the parameters the fit of this model reports (models.diagnostics.REPORTED): the methods
    # section names the terms they belong to
    params = ["mu", "b_trend[2]", "treatment_effect"]
    params += [f"theta_e[{e}]" for e in range(1, 5)] if eti else []
    params += ["beta[age]"] if family == "bernoulli" else []
    params += ["alignment_main", "alignment_interaction"] if gamma else []
    params += ["sd_cluster"] + (["sd_cluster_period"] if family == "bernoulli" else [])
    params += ["sd_treatment"] if eti else []  # the fixture's eti model has random_treatment
    diag = pd.DataFrame(
        {
            "parameter": params,
            "mean": np.linspace(-0.3, 0.1, len(params)),
            "sd": 0.1,
            "eti95_lb": np.linspace(-0.6, -0.2, len(params)),
            "eti95_ub": np.linspace(0.0, 0.4, len(params)),
            "ess_bulk": 900.0 if reliable else 120.0,
            "ess_tail": 800.0,
            "r_hat": 1.001 if reliable else 1.04,
            "mcse_mean": 0.003,
            "mcse_sd": 0.002,
        }
    )
    write_fit_file(diag, folder / FIT_FILES["diagnostics"], family)
    fit = {
        "trial": TRIAL,
        "outcome": folder.parent.name,
        "model": folder.name,
        "reliable": reliable,
        "problems": [] if reliable else ["R-hat 1.040 > 1.01 (mu)", "bulk ESS 120 < 400 (mu)"],
        "retried": not reliable,
        "timings": {"compile_s": 3.2, "sample_s": 4.1},
        "sampler": {"engine": "nutpie", "chains": 4, "draws": 1000, "tune": 1000, "target_accept": 0.9},
        "seed": 1234,
        "versions": {"python": "3.12", "qialign": "0.1.0", "pymc": "6.0"},
        "divergences": 0,
        "ebfmi": [0.9, 0.95],
        "r_hat_max": float(diag["r_hat"].max()),
        "ess_bulk_min": float(diag["ess_bulk"].min()),
        "ess_tail_min": float(diag["ess_tail"].min()),
    }
    # a FitRecord (the fit step's own record type) refuses a key the fit step does not write
    blank = dict.fromkeys(FitRecord.__dataclass_fields__)
    FitRecord(**blank | fit).write(folder / FIT_FILES["record"])


def _build(root: Path, sim: dict | None = None, **over) -> tuple[Path, Path, list[Path]]:
    """A results folder for a small simulated trial (``_sim_spec()`` updated by ``sim``); returns
    (results_dir, config_path, logs)."""
    data = root / "data"
    simulate_trial({**_sim_spec(), **(sim or {})}, 3).write(data)
    cfg = _trial_config(data, **over)
    config = root / "config" / f"{TRIAL}.yaml"
    config.parent.mkdir(parents=True)
    config.write_text(yaml.safe_dump(cfg, sort_keys=False))
    res = root / "results" / TRIAL
    validate_trial(config, res / "validation.txt", res / "data.json")
    alignment_scores(config, res / "alignment" / "scores.csv")
    rng = np.random.default_rng(1)
    gamma = cfg["alignment"].get("source", "none") != "none"
    for outcome, ocfg in cfg["outcomes"].items():
        prepare_outcome(config, outcome, res / outcome)
        cells = pd.read_parquet(res / outcome / "cells.parquet")
        models = ocfg.get("models") or [m["id"] for m in cfg["models"]]
        for i, model in enumerate(models):
            mcfg = next(m for m in cfg["models"] if m["id"] == model)
            _write_model(
                res / outcome / model,
                cells,
                ocfg["family"],
                eti=mcfg.get("exposure") == "eti",
                reliable=(i == 0),
                rng=rng,
                gamma=gamma,
            )
        if len(models) > 1:
            loo = pd.DataFrame(
                {
                    "model": models,
                    "rank": range(len(models)),
                    "elpd_diff": [0.0, -1.5][: len(models)],
                    "dse": [0.0, 1.1][: len(models)],
                    "p": [6.1, 9.3][: len(models)],
                    "elpd": [-100.2, -101.7][: len(models)],
                    "se": [8.0, 8.1][: len(models)],
                    "weight": [0.8, 0.2][: len(models)],
                    "n_pareto_k_bad": [0, 2][: len(models)],
                    "max_pareto_k": [0.41, 0.93][: len(models)],
                }
            )
            assert set(loo) == set(LOO_COLUMNS)  # the columns the real producer writes
            loo.to_csv(res / outcome / "loo.csv", index=False)
        if outcome == "y":  # cnt has no cross-check: the page must say so
            cc = []
            for method in ("gee_exchangeable_kc", "glm_cluster_robust"):
                cc += [
                    [method, "treatment_effect", "log-odds", -0.25, 0.15, -0.55, 0.05, 3.0, ""],
                    [
                        method,
                        "treatment_effect_natural",
                        "odds ratio",
                        np.exp(-0.25),
                        np.nan,
                        np.exp(-0.55),
                        np.exp(0.05),
                        3.0,
                        "",
                    ],
                    [method, "alignment_interaction", "log-odds", -0.2, 0.1, -0.4, 0.0, 3.0, ""],
                ]
            cc = pd.DataFrame(cc, columns=FREQ_COLUMNS)  # cross_check's columns, then the step's rows
            frequentist_rows(cc, TRIAL, outcome, "main", 0.95).to_csv(
                res / outcome / "crosscheck.csv", index=False
            )
    logs = []
    for step in ("validate", "alignment", "prepare_y"):
        log = res / "logs" / f"{step}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(f"{step} ok\n")
        logs.append(log)
    return res, config, logs


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    res, config, logs = _build(root)
    out = root / "reports" / TRIAL / "report.html"
    render_report(res, config, out, logs=logs)
    return {
        "html": out.read_text(encoding="utf-8"),
        "out": out,
        "results": res,
        "config": config,
        "root": root,
    }


def _section(html: str, sid: str) -> str:
    m = re.search(rf'<section[^>]*id="{sid}".*?</section>', html, re.S)
    assert m, f"section {sid} missing"
    return m.group(0)


def _esc(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def test_every_section_present(report):
    html = report["html"]
    for sid in SECTION_IDS:
        assert re.search(rf'<section[^>]*id="{sid}"', html), sid
    assert html.count("<section") == len(SECTION_IDS)


def test_self_contained(report):
    html = report["html"]
    assert "http://" not in html and "https://" not in html
    assert "<link" not in html
    assert not re.search(r"<script[^>]*\bsrc=", html)
    assert not re.search(r"""(src|href)\s*=\s*["']?(//|https?:)""", html)
    assert "url(" not in html  # no CSS-fetched resources


def test_images_are_valid_png_data_uris(report):
    from PIL import Image

    srcs = re.findall(r'<img[^>]*\bsrc="([^"]*)"', report["html"])
    assert len(srcs) >= 8
    for src in srcs:
        assert src.startswith("data:image/png;base64,")
        raw = base64.b64decode(src.split(",", 1)[1], validate=True)
        assert raw[:8] == b"\x89PNG\r\n\x1a\n"
        with Image.open(io.BytesIO(raw)) as im:
            im.verify()
            assert im.size[0] > 100 and im.size[1] > 50


def test_summary_numbers_equal_estimates(report):
    summary = _section(report["html"], "summary")
    res = report["results"]
    for outcome in ("y", "cnt"):
        est = pd.read_csv(res / outcome / "main" / "estimates.csv").set_index("estimand")
        nat = est.loc["treatment_effect_natural"]
        text = f"{nat['scale']} " + with_interval(
            nat["estimate"], nat["lower"], nat["upper"], interval_label(nat["interval"])
        )
        assert _esc(text) in summary, text
        assert "95% CrI" in text
        assert _esc(percent(est.loc["prob_beats_trend", "estimate"])) in summary
        for name in ("alignment_interaction", "effect_low_alignment", "effect_high_alignment"):
            r = est.loc[name]
            assert _esc(with_interval(r["estimate"], r["lower"], r["upper"], "95% CrI")) in summary, name
    # the reference cross-check quoted (y only): of gee_exchangeable_kc and glm_cluster_robust the
    # producer marks the GLM (kc is not in REFERENCE_CROSSCHECKS), and the page follows the mark
    assert "GLM, cluster-robust SE" in summary and "Kauermann-Carroll" not in summary


def test_small_counts_suppressed(report):
    html = report["html"]
    scores = pd.read_csv(report["results"] / "alignment" / "scores.csv")
    assert (scores["n_managerial"] < 5).all()
    table = _section(html, "alignment")
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", table, re.S)
    body = [r for r in rows if "<td" in r and any(f"<td>{c}</td>" in r for c in scores["cluster"])]
    assert len(body) == len(scores)
    for r in body:
        cells = re.findall(r"<td[^>]*>(.*?)</td>", r)
        assert cells[5] == "&lt;5", cells  # managerial respondents
    # the clusters file's 4 rows are clusters, not people: their count is printed whole
    prov = _section(html, "provenance")
    assert re.search(r"<td>clusters</td><td>[^<]*clusters.csv</td><td[^>]*>4</td>", prov)
    # no table cell anywhere shows a bare count 1..4 in a count column of the data-flow table
    flow = _section(html, "data-flow")
    for v in re.findall(r'<td class="n">([^<]*)</td>', flow):
        assert v not in {"1", "2", "3", "4"}


def test_synthetic_banner_and_badges(report):
    html = report["html"]
    assert 'class="synthetic-banner"' in html
    assert html.count('class="badge-synthetic"') >= len(SECTION_IDS)


def test_attention_lists_unreliable_fits_and_pareto(report):
    box = _section(report["html"], "attention")
    assert "y / alt" in box and "fit unreliable" in box and "R-hat 1.040" in box
    assert "Pareto k &gt; 0.7" in box
    assert "y / main" not in box


def test_absent_parts_said(report):
    html = report["html"]
    assert "No frequentist cross-check for this outcome" in _section(html, "effects")
    assert "One model variant only: no LOO comparison." in _section(html, "model-checks")
    assert "Effect by exposure time" in _section(html, "effects")  # alt has eti
    assert "immediate step" in _section(html, "effects")  # cnt's only model is a step


def test_log_links_relative(report):
    logs = _section(report["html"], "logs")
    assert "href='../../results/tiny/logs/validate.log'" in logs


def test_methods_text_from_config(report):
    methods = _section(report["html"], "methods")
    assert "Model main" in methods and "Model alt" in methods
    assert "Normal(0, 1)" in methods  # effect prior default
    assert "exposure-time indicators" in methods
    prov = _section(report["html"], "provenance")
    assert "sha256" not in prov.lower() or "SHA-256" in prov
    data = json.loads((report["results"] / "data.json").read_text())
    for f in data["files"].values():
        assert f["sha256"] in prov
    assert _esc(report["config"].read_text().splitlines()[0]) in prov


def test_robust_to_absent_parts(tmp_path):
    """No alignment, one model, no model outputs for one outcome, not synthetic: still renders."""
    res, config, _ = _build(tmp_path, alignment={"source": "none"}, models=[{"id": "main"}], synthetic=False)
    shutil.rmtree(res / "cnt" / "main")
    (res / "y" / "crosscheck.csv").unlink()
    out = tmp_path / "out" / "report.html"
    render_report(res, config, out)
    html = out.read_text()
    for sid in SECTION_IDS:
        assert f'id="{sid}"' in html
    assert 'class="synthetic-banner"' not in html and 'class="badge-synthetic"' not in html
    assert "SYNTHETIC DATA" not in html
    box = _section(html, "attention")
    assert "cnt / main" in box
    assert "alignment" not in box  # alignment.source: none is a deliberate choice, not a problem
    assert "No step logs were given" in html


def test_formatting_helpers():
    assert count(0) == "0" and count(3) == "<5" and count(5) == "5" and count(12345) == "12,345"
    assert count(2, below=3) == "<3" and count(np.nan) == "–"
    assert with_interval(0.971, 0.8, 1.17, "95% CrI") == "0.97 (95% CrI 0.80 to 1.17)"
    assert with_interval(-0.0123, -0.031, 0.0061, "90% CrI") == "−0.012 (90% CrI −0.031 to 0.006)"
    assert num(-0.0001, 2) == "0.00"
    assert percent(0.8731) == "87%" and percent(0.999) == ">99%"
    assert interval_label("hdi90") == "90% HDI" and interval_label("eti95") == "95% CrI"
    assert interval_label("ci90", bayesian=False) == "90% CI" and interval_label("ci95") == "95% CI"
    assert interval_label("") == "CrI" and interval_label(None, bayesian=False) == "CI"  # no level claimed


CHROMIUM = next((p for p in ("/usr/bin/chromium", "/usr/bin/chromium-browser") if Path(p).exists()), None)


@pytest.mark.browser
def test_report_in_headless_chromium(report, tmp_path):
    if CHROMIUM is None:
        pytest.skip("chromium not installed: apt-get install chromium")
    url = report["out"].resolve().as_uri()
    common = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--hide-scrollbars",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--virtual-time-budget=5000",
    ]
    dom = subprocess.run([*common, "--dump-dom", url], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    n_img = len(re.findall(r"<img\b", report["html"]))
    m = re.search(r'data-images-ok="(\d+)/(\d+)"', dom.stdout)
    assert m, "the page's load script did not run"
    assert int(m.group(2)) == n_img and m.group(1) == m.group(2), m.group(0)
    for sid in SECTION_IDS:
        assert f'id="{sid}"' in dom.stdout
    shot = tmp_path / "report.png"
    run = subprocess.run(
        [*common, "--window-size=1280,2400", f"--screenshot={shot}", url],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    raw = shot.read_bytes()
    assert raw[:8] == b"\x89PNG\r\n\x1a\n" and len(raw) > 50_000
    from PIL import Image

    with Image.open(shot) as im:
        colours = im.convert("RGB").resize((64, 120)).getcolors(64 * 120)
        assert colours is None or len(colours) > 20  # not a blank page
    # the effects section as a reader first sees it (the page with only that section): the lead
    # forest plot above the folded table
    html = report["html"]
    others = [m.group(0) for m in re.finditer(r'<section[^>]*id="(\w[\w-]*)".*?</section>', html, re.S)]
    only = html
    for block in others:
        if 'id="effects"' not in block[:200]:
            only = only.replace(block, "")
    page = tmp_path / "effects.html"
    page.write_text(only, encoding="utf-8")
    effects = tmp_path / "effects.png"
    run = subprocess.run(
        [*common, "--window-size=1280,1400", f"--screenshot={effects}", page.resolve().as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert 'id="effects"' in only and 'id="design"' not in only
    with Image.open(effects) as im:
        colours = im.convert("RGB").resize((64, 70)).getcolors(64 * 70)
        assert colours is None or len(colours) > 20  # the forest plots are drawn


def test_pareto_warning_from_real_fits(report, tmp_path):
    """loo.csv from the real compare step on two real fits of data with one wild cell (30 times
    its count): the attention box names the model and the cells with Pareto k > 0.7."""
    from models_sim import simulate
    from qialign.inference.fit import fit_model
    from qialign.inference.posterior_io import save_posterior
    from qialign.models.spec import simulated_spec
    from qialign.steps.collect import compare_models

    cells, _, _, _ = simulate("poisson", n_clusters=6, n_periods=4, n_per_cp=10, seed=2)
    cells.loc[0, "count"] = cells.loc[0, "count"] * 30 + 30
    paths = {}
    for model, cp in (("main", "none"), ("alt", "exchangeable")):
        spec = simulated_spec("poisson", {"id": model, "cluster_period": cp, "moderators": []})
        fit = fit_model(
            cells,
            spec,
            sampler={"chains": 2, "draws": 200, "tune": 200},
            diagnostics={"retry": False},
            seed=1,
        )
        paths[model] = tmp_path / f"{model}.nc"
        save_posterior(fit, paths[model], attrs={})
    res = tmp_path / "results" / TRIAL
    shutil.copytree(report["results"], res)
    loo = compare_models(paths, res / "y" / "loo.csv")
    assert list(loo.columns) == list(LOO_COLUMNS) and (loo["n_pareto_k_bad"] > 0).any()
    alone = compare_models({"main": paths["main"]}, res / "cnt" / "loo.csv")  # cnt fits one model
    assert alone["rank"].tolist() == [0] and np.isfinite(alone["elpd"]).all()
    out = tmp_path / "report.html"
    render_report(res, report["config"], out)
    html = out.read_text(encoding="utf-8")
    checks = _section(html, "model-checks")
    assert num(alone["elpd"].item(), 2) in checks  # a single model's LOO row shows its elpd
    box = _section(html, "attention")
    bad = loo[loo["n_pareto_k_bad"] > 0]
    for _, row in bad.iterrows():
        assert (
            f"y / {row['model']}" in box
            and f"{int(row['n_pareto_k_bad'])} cell(s) with Pareto k &gt; 0.7" in box
        )


def _rerender(report, tmp_path, edit) -> str:
    """The fixture's results after ``edit(results_dir)``, rendered again; returns the attention box."""
    res = tmp_path / "results" / TRIAL
    shutil.copytree(report["results"], res)
    edit(res)
    out = tmp_path / "report.html"
    render_report(res, report["config"], out)
    return _section(out.read_text(encoding="utf-8"), "attention")


def test_attention_flags_bayes_and_frequentist_on_opposite_sides(report, tmp_path):
    est = pd.read_csv(report["results"] / "y" / "main" / "estimates.csv").set_index("estimand")
    th = est.loc["treatment_effect"]

    def opposite(res):
        cc = pd.read_csv(res / "y" / "crosscheck.csv")[FREQ_COLUMNS]
        gee = pd.DataFrame(
            [["gee_nested_exchangeable_md", "treatment_effect", "log-odds", 0.6, 0.1, 0.4, 0.8, 3.0, ""]],
            columns=FREQ_COLUMNS,
        )
        rows = frequentist_rows(pd.concat([cc, gee]), TRIAL, "y", "main", 0.95)
        assert rows.set_index(["method", "estimand"]).loc[(gee.method[0], "treatment_effect"), "reference"]
        rows.to_csv(res / "y" / "crosscheck.csv", index=False)

    box = _rerender(report, tmp_path, opposite)
    assert "Bayesian and frequentist answers differ" in box
    assert "GEE, nested exchangeable" in box and "above 0" in box
    assert ("includes 0" in box) == bool(th["lower"] < 0 < th["upper"])
    assert "answers differ" not in _section(report["html"], "attention")  # the fixture agrees


def test_attention_flags_few_events(report, tmp_path):
    def rare(res):
        cells = pd.read_parquet(res / "y" / "cells.parquet")
        cells["events"] = (cells["treated"] == 1).astype(int)  # one event per treated cell, none else
        cells.to_parquet(res / "y" / "cells.parquet", index=False)

    box = _rerender(report, tmp_path, rare)
    assert ">y:</span> few events: 0 under control" in box and "(fewer than 10)" in box
    assert ">y:</span> few events" not in _section(report["html"], "attention")


def test_design_counts_read_as_words_and_no_flat_forest(tmp_path):
    """One site reads '1 site'; a model with no moderator and no cluster-specific effects gives
    every cluster the same effect, so the page says so instead of drawing a flat forest plot."""
    res, config, _ = _build(tmp_path, alignment={"source": "none"}, models=[{"id": "main"}])
    clusters = pd.read_csv(config.parent.parent / "data" / "clusters.csv")
    assert clusters["site"].nunique() == 2
    for outcome in ("y", "cnt"):
        ce = pd.read_csv(res / outcome / "main" / "cluster_effects.csv")
        for c in ("estimate", "lower", "upper", "natural_estimate", "natural_lower", "natural_upper"):
            if c in ce:
                ce[c] = ce[c].iloc[0]
        ce.to_csv(res / outcome / "main" / "cluster_effects.csv", index=False)
    out = tmp_path / "report.html"
    render_report(res, config, out)
    html = out.read_text(encoding="utf-8")
    design = _section(html, "design")
    assert "in 2 sites" in design and "4 clusters" in design and "6 periods" in design
    from qialign.report.blocks import plural

    assert (plural(1, "site"), plural(0, "site"), plural(2, "site")) == ("1 site", "0 sites", "2 sites")
    effects = _section(html, "effects")
    assert "gives every cluster the same effect" in effects
    assert "Forest plot of cluster-specific effects" not in effects
    assert "Forest plot of cluster-specific effects" in _section(_report_html(tmp_path), "effects")


def _report_html(tmp_path) -> str:
    root = tmp_path / "with_alignment"
    res, config, _ = _build(root)
    out = root / "report.html"
    render_report(res, config, out)
    return out.read_text(encoding="utf-8")


def test_effects_lead_with_a_forest_plot_and_fold_the_table(report):
    """Per outcome: the compact forest plot (Bayesian models, the reference cross-check, the true
    value of a synthetic trial) comes first; the full table is one click away."""
    block = _section(report["html"], "effects")
    y = block[block.index('id="effects-y"') : block.index('id="effects-cnt"')]
    fig, table = y.index("Forest plot of the effect estimates"), y.index("<details><summary>All estimates")
    assert fig < table
    assert "dotted line: the true simulated conditional value (synthetic data)" in y
    assert "<table" in y[table:]  # the table lives inside the fold


def test_period_axes_are_ticked_in_whole_periods(monkeypatch):
    """Periods and exposure times are counts: no 1.5 on their axes."""
    from qialign.report import figures

    seen = []
    monkeypatch.setattr(figures, "to_data_uri", lambda fig, dpi=130: seen.append(fig) or "data:")
    by_period = pd.DataFrame(
        {
            "period": [1, 2, 3],
            "observed_control": [0.3, 0.32, 0.31],
            "observed_intervention": [np.nan, 0.28, 0.25],
        }
        | {"n_control": [10, 6, 3], "n_intervention": [0, 4, 7]}
    )
    figures.time_series(by_period, "risk")
    figures.exposure_curve(np.array([1, 2, 3]), np.zeros(3), -np.ones(3), np.ones(3), "log-odds")
    for fig in seen:
        ax = fig.axes[0]
        ax.figure.canvas.draw()
        lo, hi = ax.get_xlim()
        ticks = [t for t in ax.get_xticks() if lo <= t <= hi]
        assert ticks and all(float(t).is_integer() for t in ticks), ticks


def test_attention_flags_role_groups_of_one_or_two(report):
    """The fixture's survey has one ward manager per ward: every ward is named with its count."""
    box = _section(report["html"], "attention")
    assert "role groups with fewer than 3 respondents" in box
    assert "W1 (wave 1: managerial 1)" in box


def test_alignment_change_between_waves_is_drawn(report, tmp_path):
    """Two waves: the change since the first one (the real producer, alignment_change) is drawn."""
    from qialign.alignment.latent import alignment_change

    def two_waves(res):
        scores = pd.read_csv(res / "alignment" / "scores.csv", dtype={"cluster": str, "wave": str})
        later = scores.assign(wave="follow-up", alignment=scores["alignment"] + 0.05)
        both = pd.concat([scores.assign(wave="baseline"), later], ignore_index=True)
        both["wave_order"] = np.repeat([1, 2], len(scores))
        both.to_csv(res / "alignment" / "scores.csv", index=False)
        alignment_change(both).to_csv(res / "alignment" / "change.csv", index=False)

    res = tmp_path / "results" / TRIAL
    shutil.copytree(report["results"], res)
    two_waves(res)
    out = tmp_path / "report.html"
    render_report(res, report["config"], out)
    block = _section(out.read_text(encoding="utf-8"), "alignment")
    assert "Change in alignment per cluster from wave baseline to wave follow-up" in block
    assert "Change in alignment" not in _section(report["html"], "alignment")  # one wave: nothing drawn


def test_design_diagram_lists_clusters_in_natural_order(tmp_path, monkeypatch):
    """Twelve wards in one hospital: the diagram's rows read W1, W2, ..., W10, W11, W12 (not the
    text order W1, W10, W11, W12, W2)."""
    from qialign.report import figures

    drawn = []
    real = figures.design_grid
    monkeypatch.setattr(figures, "design_grid", lambda names, *a: drawn.append(names) or real(names, *a))
    sim = {"clusters_per_site": [12], "schedule": {"baseline": 1, "every": 1, "per_step": 3}}
    res, config, _ = _build(tmp_path, sim=sim, alignment={"source": "none"}, models=[{"id": "main"}])
    out = tmp_path / "report.html"
    render_report(res, config, out)
    assert "Design diagram: clusters by periods" in _section(out.read_text(encoding="utf-8"), "design")
    (names,) = drawn
    assert [c for c, _ in names] == [f"W{i}" for i in range(1, 13)]


def test_suppression_threshold_is_configurable(tmp_path):
    """``report.suppress_below: 2``: one ward manager is shown as <2; the clinical counts (3 to 10
    per ward) are printed whole, and the clusters file's row count is never suppressed."""
    res, config, _ = _build(tmp_path, report={"suppress_below": 2}, models=[{"id": "main"}])
    out = tmp_path / "report.html"
    render_report(res, config, out)
    html = out.read_text(encoding="utf-8")
    scores = pd.read_csv(res / "alignment" / "scores.csv")
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", _section(html, "alignment"), re.S)
    body = [re.findall(r"<td[^>]*>(.*?)</td>", r) for r in rows if "<td" in r and "W" in r]
    assert len(body) == len(scores)
    for cells, (_, r) in zip(body, scores.sort_values("cluster").iterrows(), strict=True):
        assert cells[4] == str(int(r["n_clinical"])) and cells[5] == "&lt;2", cells
    assert "&lt;5" not in html


def test_methods_describe_the_design_analysed(report, tmp_path):
    """Stepped wedge and controlled before-after each read as what was analysed: the clusters,
    periods and the never-starting controls counted from data.json."""
    methods = _section(report["html"], "methods")
    assert "Design analysed: <strong>stepped wedge</strong> (4 clusters, 6 periods)" in methods
    sim = {"design": "controlled_before_after", "schedule": {"start": 4, "controls": 2}}
    res, config, _ = _build(
        tmp_path,
        sim=sim,
        design="controlled_before_after",
        alignment={"source": "none"},
        models=[{"id": "main"}],
    )
    starts = [c["start_period"] for c in json.loads((res / "data.json").read_text())["clusters"]]
    assert starts.count(None) == 2
    out = tmp_path / "report.html"
    render_report(res, config, out)
    html = out.read_text(encoding="utf-8")
    assert (
        "Design analysed: <strong>controlled before-after</strong> (4 clusters, 6 periods; 2 control "
        "clusters never start): the controls carry the secular trend."
    ) in _section(html, "methods")
    assert "2 clusters never start (controls)" in _section(html, "design")
    assert "stepped wedge" not in _section(html, "methods")


def test_alignment_shows_the_scores_reliability_and_the_attenuation(report):
    """R comes from the alignment step's own scores.csv (qialign.alignment.debias) and is printed as
    computed; with plugin propagation the page says gamma is attenuated by about R."""
    scores = pd.read_csv(report["results"] / "alignment" / "scores.csv")
    first = scores[scores["wave_order"] == 1]
    r = first["reliability"].iloc[0]
    expected = max(0.0, 1 - (first["alignment_sd"] ** 2).mean() / first["alignment"].var(ddof=1))
    assert r == pytest.approx(expected, abs=1e-12)
    section = _section(report["html"], "alignment")
    assert f"R = {num(r, 2)}</strong>" in section
    assert "attenuated towards 0 by about this factor" in section
    # beside each outcome's gamma: R and the rough unattenuated gamma / R, from the fits' estimates
    assert f"score reliability <strong>R = {num(r, 2)}</strong>" in section
    gammas = [
        pd.read_csv(f).set_index("estimand").loc["alignment_interaction", "estimate"]
        for f in sorted(report["results"].glob("*/*/estimates.csv"))
        if "alignment_interaction" in set(pd.read_csv(f)["estimand"])
    ]
    assert gammas and any(f"roughly {num(g / r, 3)} (γ / R)" in section for g in gammas)
