"""A cluster with no usable survey is named, never a silent zero (issue 15 item 5): the fit step
records which clusters it analysed at the mean alignment, and the report's attention box and
alignment section say so."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import yaml

from qialign.report import render_report
from qialign.report.attention import unscored_text
from sim_pipeline import fit_through_steps, write_trial
from test_overdispersion import SIM as NB_SIM
from test_report import TRIAL, _section, _sim_spec, _trial_config, report  # noqa: F401  (the fixture)

SIM = {**NB_SIM, "survey": _sim_spec()["survey"], "write_alignment": False}
CONFIG = {
    "id": "unscored",
    "design": "stepped_wedge",
    "outcomes": {"incidents": {"family": "negative_binomial", "exposure": "bed_days"}},
    "sampler": {"chains": 2, "draws": 100, "tune": 100},
    "diagnostics": {"retry": False},
}


def test_the_fit_step_records_the_clusters_without_a_score(tmp_path):
    config, _ = write_trial(tmp_path, SIM, 5, CONFIG)
    data = tmp_path / "data"
    clusters = pd.read_csv(data / "clusters.csv")["cluster"].astype(str).tolist()
    gone = clusters[2]
    survey = pd.read_csv(data / "survey.csv")
    survey[survey["cluster"].astype(str) != gone].to_csv(data / "survey.csv", index=False)
    cfg = yaml.safe_load(config.read_text())
    cfg["data"]["survey"] = str(data / "survey.csv")
    cfg["alignment"] = _trial_config(data)["alignment"]  # the simulated survey's roles and domains
    config.write_text(yaml.safe_dump(cfg, sort_keys=False))
    _, record = fit_through_steps(config, "incidents", "main", tmp_path)
    assert record.unscored_clusters == [gone]
    assert any(gone in note for note in record.notes)
    written = json.loads((tmp_path / "incidents" / "main" / "fit.json").read_text())
    assert written["unscored_clusters"] == [gone]


def test_the_report_names_them_in_the_attention_box_and_the_alignment_section(report, tmp_path):  # noqa: F811
    res = tmp_path / "results" / TRIAL
    shutil.copytree(report["results"], res)
    fit = res / "y" / "main" / "fit.json"
    record = json.loads(fit.read_text())
    fit.write_text(json.dumps({**record, "unscored_clusters": ["W3", "W10"]}))
    out = tmp_path / "report.html"
    render_report(res, report["config"], out)
    html = out.read_text(encoding="utf-8")
    assert "no usable alignment score" in _section(html, "attention")
    assert "W3, W10" in _section(html, "attention") and "W3, W10" in _section(html, "alignment")
    assert "no usable alignment score" not in _section(report["html"], "attention")  # the fixture has all
    assert unscored_text(["a"], None).startswith("no usable alignment score in the moderating wave")
