"""The board's and QI team's parts of the report (issue 19): plain summary, CONSORT-SW flow and
checklist, baseline table, counterfactual SPC per cluster, and the page printed to PDF.

The fixture is the tiny simulated stepped-wedge trial (tests/data/tiny_sim.yaml, its binary outcome)
through the real steps: simulate, validate, prepare, alignment, fit (few draws), render. So every
number checked here was written by its real producer.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from qialign import spc
from qialign.report import render_report
from qialign.report.consort import CHECKLIST
from qialign.report.plain_summary import figures_of
from qialign.report.spc_figure import spc_chart
from qialign.report.spc_section import cluster_spc, verdict
from qialign.report.tables import percent
from qialign.results import FIT_FILES
from qialign.steps.prepare import validate_trial
from sim_pipeline import fit_through_steps, write_trial
from test_report import _section

ROOT = Path(__file__).resolve().parents[1]
TRIAL = {
    "id": "board",
    "title": "Tiny board-report trial",
    "synthetic": True,
    "design": "stepped_wedge",
    "outcomes": {"y_bin": {"family": "bernoulli", "better": "lower", "label": "Bad outcome"}},
    "alignment": {
        "source": "survey",
        "roles": {"clinical": ["doctor", "nurse"], "managerial": ["matron"]},
        "domains": {"safety": ["q1", "q2", "q3"], "flow": ["q4", "q5", "q6"]},
    },
    "models": [{"id": "hh"}],
    "sampler": {"chains": 2, "draws": 150, "tune": 150},
    "diagnostics": {"retry": False},
}


@pytest.fixture(scope="module")
def board(tmp_path_factory):
    work = tmp_path_factory.mktemp("board")
    sim = yaml.safe_load((ROOT / "tests" / "data" / "tiny_sim.yaml").read_text())
    sim["outcomes"] = {"y_bin": sim["outcomes"]["y_bin"]}
    config, _ = write_trial(work, sim, 7, TRIAL)
    cfg = yaml.safe_load(config.read_text())
    cfg["data"]["survey"] = str(work / "data" / "survey.csv")
    config.write_text(yaml.safe_dump(cfg, sort_keys=False))
    # outcomes lost to follow-up: 6 rows of the first cluster, 2 of the second (shown as <5)
    patients = pd.read_csv(work / "data" / "patients.csv")
    first, second = sorted(patients["cluster"].unique())[:2]
    for cluster, k in ((first, 6), (second, 2)):
        rows = patients.index[patients["cluster"] == cluster][:k]
        patients.loc[rows, "y_bin"] = np.nan
    patients.to_csv(work / "data" / "patients.csv", index=False)
    res = work / "results" / "board"
    validate_trial(config, res / "validation.txt", res / "data.json")
    est, _ = fit_through_steps(config, "y_bin", "hh", res)
    out = work / "reports" / "board" / "report.html"
    render_report(res, config, out)
    return {"html": out.read_text(encoding="utf-8"), "out": out, "results": res, "est": est, "work": work}


def _spans(html: str) -> list[str]:
    return [s.replace("−", "-") for s in re.findall(r"<span class='num'>([^<]*)</span>", html)]


def test_the_page_opens_with_the_plain_summary_and_its_numbers_are_the_estimates(board):
    html = board["html"]
    first = re.search(r'<section class="report-section" id="([\w-]+)"', html).group(1)
    assert first == "plain-summary"
    text = _section(html, "plain-summary")
    est = pd.read_csv(board["results"] / "y_bin" / "hh" / FIT_FILES["estimates"]).set_index("estimand")
    expected = list(figures_of(est.loc["treatment_effect_natural"])[:3])
    expected.append(percent(est.loc["prob_beats_trend", "estimate"]))
    expected += figures_of(est.loc["alignment_interaction"])[:3]
    got = _spans(text)
    assert got == [x.replace("−", "-") for x in expected]  # every number, in order, and no other
    nat = est.loc["treatment_effect_natural"]
    assert float(got[0]) == pytest.approx(nat["estimate"], abs=0.005)  # rounded as shown
    assert "6 clusters" in text and "stepped-wedge" in text
    assert 'id="glossary"' in text and "Secular trend" in text


def test_consort_flow_counts_the_prepared_cells_by_sequence(board):
    text = _section(board["html"], "consort")
    cells = pd.read_parquet(board["results"] / "y_bin" / "cells.parquet")
    clusters = pd.read_csv(board["work"] / "data" / "clusters.csv")
    # one row per sequence (the tiny trial starts one cluster per period from period 2)
    for start, group in clusters.groupby("start_period"):
        row = re.search(rf"<tr[^>]*><td>starts in period {int(start)}</td>(.*?)</tr>", text, re.S)
        assert row, start
        tds = re.findall(r"<td[^>]*>(.*?)</td>", row.group(1))
        assert tds[0] == tds[1] == str(len(group))
        n = cells[cells["cluster"].isin(group["cluster"])].groupby("period")["n"].sum()
        periods = sorted(cells["period"].unique())
        shown = [re.sub(r"</?strong>|,", "", td) for td in tds[2 : 2 + len(periods)]]
        assert shown == [str(int(v)) for v in n.reindex(periods).to_numpy()]
        bold = [td.startswith("<strong>") for td in tds[2 : 2 + len(periods)]]
        assert bold == [p >= start for p in periods]
        lost = {"W1": "6", "W2": "&lt;5"}.get(group["cluster"].iloc[0], "0")
        assert tds[-2:] == [lost, "0"], (start, tds[-2:])  # outcome missing, covariate missing
    est = board["est"]
    for name in ("icc", "cac"):
        e = f"{est.loc[name, 'estimate']:.2f}"
        assert e in text or f"{est.loc[name, 'estimate']:.3f}" in text
    appendix = _section(board["html"], "consort-checklist")
    assert appendix.count("<tr") == len(CHECKLIST) + 1
    for _, _, where in CHECKLIST:
        if where.startswith("#"):
            assert f'id="{where[1:]}"' in board["html"], where  # every link lands on the page


def test_baseline_table_by_condition(board):
    text = _section(board["html"], "baseline")
    cells = pd.read_parquet(board["results"] / "y_bin" / "cells.parquet")
    for arm, label in ((0, "Control"), (1, "Intervention")):
        part = cells[cells["treated"] == arm]
        pct = f"{100 * part['events'].sum() / part['n'].sum():.1f}%"
        assert f"{int(part['events'].sum()):,} events ({pct})" in text, label
        assert f'<td class="n">{int(part["n"].sum()):,}</td>' in text or f">{int(part['n'].sum()):,}<" in text


def test_one_spc_panel_per_cluster_with_its_verdict(board):
    text = _section(board["html"], "spc")
    cf = pd.read_csv(board["results"] / "y_bin" / "hh" / FIT_FILES["counterfactual"])
    clusters = sorted(cf["cluster"].unique())
    assert text.count("<figure>") == len(clusters)
    for c in clusters:
        w = cluster_spc(cf[cf["cluster"] == c], "bernoulli")
        assert w.chart == "p"
        base = cf[(cf["cluster"] == c) & (cf["treated"] == 0)]
        assert w.limits.centre == pytest.approx(
            (base["observed"] * base["n"]).sum() / base["n"].sum(), abs=1e-12
        )
        caption = re.search(rf"<figcaption>{c}: (.*?)</figcaption>", text, re.S).group(1)
        assert verdict(w, "lower").split(" ")[0] in caption and "intervention periods" in caption


def test_beyond_the_counterfactual_means_outside_its_limits():
    """A cluster whose intervention periods drop far below the band expected without the
    intervention goes beyond the counterfactual; one that follows the band does not."""
    periods = np.arange(1, 13)
    treated = (periods >= 7).astype(int)
    n = np.full(12, 200.0)
    flat = np.full(12, 0.3)
    cf = pd.DataFrame(
        {
            "cluster": "A",
            "period": periods,
            "treated": treated,
            "n": n,
            "without_mean": flat,
            "without_lower": flat - 0.02,
            "without_upper": flat + 0.02,
        }
    )
    follows = cf.assign(observed=[0.3, 0.31, 0.29, 0.3, 0.32, 0.28, 0.3, 0.31, 0.29, 0.3, 0.31, 0.29])
    w = cluster_spc(follows, "binomial")
    assert not w.beyond.any() and not w.cf_runs.signal
    assert "0 of its 6 intervention periods" in verdict(w, "lower") and "no change beyond" in verdict(
        w, "lower"
    )
    drops = follows.assign(observed=np.where(treated == 1, 0.1, follows["observed"]))
    w = cluster_spc(drops, "binomial")
    assert w.beyond.sum() == 6 and "6 of its 6 intervention periods" in verdict(w, "lower")
    assert "with 6 of 6 intervention periods on the better side" in verdict(w, "lower")
    assert "beyond the secular trend (better than expected)" in verdict(w, "lower")
    assert w.runs.long_run  # six low points after six around the median
    lo = 0.28 - 3 * np.sqrt(0.28 * 0.72 / 200)
    np.testing.assert_allclose(w.cf_lower, lo, rtol=0, atol=1e-12)
    xmr = cluster_spc(drops.assign(n=1.0), "gaussian")
    assert xmr.chart == "xmr" and xmr.limits.sigma[0] == pytest.approx(
        np.abs(np.diff(follows["observed"][:6])).mean() * spc.XMR_FACTOR / 3, abs=1e-12
    )
    for chart in (w, xmr):  # every chart draws (XmR limits are per point, as p and u limits are)
        assert spc_chart(chart, "A", "value").startswith("data:image/png;base64,")


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
PDF_TOOLS = shutil.which("pdfinfo") and shutil.which("pdftotext") and shutil.which("pdfimages")


def _assert_prints_whole(page: Path, html: str, tmp_path: Path) -> None:
    """Chromium's print-to-PDF of ``page``: more than one page, every figure drawn once and whole
    (an image cut by a page break is drawn on two pages), each big table's caption and header on
    one page, the plain summary on page 1 and the synthetic-data warning in every page's margin."""
    pdf = tmp_path / "report.pdf"
    run = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync",
         "--disable-background-networking", f"--user-data-dir={tmp_path / 'profile'}",
         "--no-pdf-header-footer", f"--print-to-pdf={pdf}", page.resolve().as_uri()],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert run.returncode == 0 and pdf.is_file(), run.stderr[-2000:]
    info = subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True, check=True).stdout
    pages = int(re.search(r"Pages:\s+(\d+)", info).group(1))
    assert pages > 1
    listing = subprocess.run(
        ["pdfimages", "-list", str(pdf)], capture_output=True, text=True, check=True
    ).stdout
    images = [line.split() for line in listing.splitlines()[2:] if line.strip()]
    objects = {}
    for cols in images:
        objects.setdefault(cols[10], set()).add(cols[0])  # object id -> pages it is drawn on
    assert all(len(p) == 1 for p in objects.values()), {k: v for k, v in objects.items() if len(v) > 1}
    assert len(objects) == html.count("<img")
    text = [
        subprocess.run(["pdftotext", "-layout", "-f", str(i), "-l", str(i), str(pdf), "-"],
                       capture_output=True, text=True, check=True).stdout
        for i in range(1, pages + 1)
    ]  # fmt: skip
    for header, caption in (
        ("CONSORT-SW topic", "CONSORT extension for stepped-wedge"),
        ("Characteristic", "Analysed data by condition"),
        ("Clusters allocated", "Clusters by sequence"),
    ):
        on = [i for i, t in enumerate(text) if header in t]
        assert on and any(caption in text[i] for i in on), header
    assert "In plain words" in text[0]
    assert all(t.lstrip().startswith("SYNTHETIC DATA · simulated") for t in text)
    assert any(re.search(r"^Baseline table\s+SYNTHETIC DATA$", t, re.M) for t in text)


def _needs_print_tools() -> None:
    if CHROMIUM is None or not PDF_TOOLS:
        pytest.skip("needs chromium and poppler-utils (apt-get install chromium poppler-utils)")


@pytest.mark.browser
def test_the_report_prints_to_pdf_without_cut_figures_or_tables(board, tmp_path):
    _needs_print_tools()
    _assert_prints_whole(board["out"], board["html"], tmp_path)


@pytest.mark.slow
def test_the_shipped_default_trials_report_has_the_board_sections(tmp_path):
    """The shipped default trial (config/trials/headsup_synthetic.yaml, its primary outcome only,
    few draws) through the real steps: the page opens with the plain summary whose numbers are
    its estimates.csv, and has the CONSORT-SW flow of its 7 wards, the checklist appendix, the
    baseline table and one SPC panel per ward, and it prints to PDF with no figure or table cut
    (about 2 minutes, most of it the fit)."""
    cfg = yaml.safe_load((ROOT / "config" / "trials" / "headsup_synthetic.yaml").read_text())
    cfg["data"] = {k: str(ROOT / v) for k, v in cfg["data"].items()}
    cfg["outcomes"] = {"excess_los": cfg["outcomes"]["excess_los"]}
    cfg |= {"sampler": {"chains": 2, "draws": 150, "tune": 200}, "diagnostics": {"retry": False}}
    config = tmp_path / "headsup_synthetic.yaml"
    config.write_text(yaml.safe_dump(cfg, sort_keys=False))
    res = tmp_path / "results" / cfg["id"]
    validate_trial(config, res / "validation.txt", res / "data.json")
    est, _ = fit_through_steps(config, "excess_los", "hh", res)
    out = tmp_path / "report.html"
    render_report(res, config, out)
    html = out.read_text(encoding="utf-8")
    assert re.search(r'<section class="report-section" id="([\w-]+)"', html).group(1) == "plain-summary"
    expected = list(figures_of(est.loc["treatment_effect_natural"])[:3])
    expected.append(percent(est.loc["prob_beats_trend", "estimate"]))
    expected += figures_of(est.loc["alignment_interaction"])[:3]
    assert _spans(_section(html, "plain-summary")) == [x.replace("−", "-") for x in expected]
    wards = pd.read_csv(ROOT / "resources" / "headsup_synthetic" / "clusters.csv")["cluster"]
    assert "7 clusters" in _section(html, "consort") and len(wards) == 7
    assert _section(html, "consort-checklist").count("<tr") == len(CHECKLIST) + 1
    assert "Analysed data by condition" in _section(html, "baseline")
    assert _section(html, "spc").count("<figure>") == len(wards)
    _needs_print_tools()
    _assert_prints_whole(out, html, tmp_path)  # the default report prints to PDF, nothing cut
