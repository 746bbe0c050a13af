"""The report of the shipped Sicily interrupted time series (config/trials/sicily_its.yaml), from a
real run of the steps (validate, alignment, prepare, fit with few draws, cross-check): the methods
section describes what was fitted and nothing else, and no count is suppressed (a population
series has no individuals)."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from qialign.report import figures
from test_report import _build, _section


def test_methods_name_what_was_fitted(sicily):
    methods = _section(sicily["html"], "methods")
    diag = pd.read_csv(sicily["results"] / "aces" / "its" / "diagnostics.csv")
    harmonics = int(diag["parameter"].str.startswith("b_season[").sum() // 2)
    assert harmonics == sicily["cfg"]["models"][0]["harmonics"] == 2
    assert "interrupted time series" in methods and "from period 37" in methods
    assert "Seasonality s(t): 2 harmonics (sine and cosine pairs) of a 12-period cycle" in methods
    assert "AR(1) residuals" in methods and "ρ ~ Beta(2, 2)" in methods
    assert "segmented regression of the series (quasi-Poisson; model-based and Newey-West" in methods
    assert "2 harmonics of a 12-period cycle" in methods.split("Frequentist cross-checks")[1]
    assert "seasonal harmonics s(t)" in methods  # its prior row


def test_methods_name_nothing_that_was_not_fitted(sicily):
    methods = _section(sicily["html"], "methods")
    diag = set(pd.read_csv(sicily["results"] / "aces" / "its" / "diagnostics.csv")["parameter"])
    assert not diag & {"sd_site", "sd_cluster", "alignment_interaction", "slope_change"}
    for absent in ("site", "σ<sub>cluster</sub>", "σ_cluster<", "v<sub>j</sub>", "u<sub>k</sub>", "GEE", "κ"):
        assert absent not in methods, absent
    assert "cluster-robust GLM" not in methods and "mixed model" not in methods
    assert "No alignment moderator." in methods


def test_no_count_of_a_population_series_is_suppressed(sicily):
    html = sicily["html"]
    assert "&lt;5" not in html
    (args,) = sicily["grid"]
    assert args[-1] == 0  # the diagram's cell sizes (one row per month) are printed whole
    assert "cluster-period units analysed" in _section(html, "design")
    flow = _section(html, "data-flow")
    assert re.search(r"<td>cluster_periods</td>\s*<td class=\"n\">59</td>", flow), flow
    prov = _section(html, "provenance")
    assert re.search(r"<td>clusters</td><td>[^<]*clusters.csv</td><td[^>]*>1</td>", prov)


def test_trend_figure_is_drawn_from_the_per_period_bands(sicily):
    """The outcome-over-time figure plots counterfactual_by_period.csv as the fit step wrote it
    (bands per draw, the secular trend f(t) alone) beside the observed rate per person-month."""
    (drawn,) = sicily["series"]
    fit_dir = sicily["results"] / "aces"
    table = pd.read_csv(fit_dir / "its" / "counterfactual_by_period.csv")
    assert len(table) == len(drawn) == 59
    for series, _, _ in figures.TIME_SERIES_LINES:
        for end in ("_mean", "_lower", "_upper"):
            pd.testing.assert_series_equal(drawn[series + end], table[series + end], check_exact=True)
    cells = pd.read_parquet(fit_dir / "cells.parquet").sort_values("period")
    rate = (cells["count"] / cells["exposure"]).to_numpy()
    observed = drawn["observed_control"].fillna(drawn["observed_intervention"]).to_numpy()
    assert observed == pytest.approx(rate, rel=1e-12)
    assert (table["trend_lower"] < table["trend_mean"]).all() and (
        table["trend_mean"] < table["trend_upper"]
    ).all()
    # an ITS has no concurrent controls: the counterfactual of the treated exists only after the start
    assert (
        table["without_treated_mean"].isna().sum() == 36 and table["without_treated_mean"].notna().sum() == 23
    )
    trends = _section(sicily["html"], "time-trends")
    assert "the secular trend f(t) alone" in trends


def test_report_fixture_writes_only_what_the_real_steps_write(sicily, tmp_path):
    """tests/test_report.py writes its model outputs by hand: every column and fit-record key it
    writes is one the real fit and cross-check steps write (here, for the Sicily fit)."""
    import json

    res, _, _ = _build(tmp_path)
    real, fake = sicily["results"] / "aces", res / "y"
    names = ("diagnostics.csv", "cluster_effects.csv", "counterfactual.csv", "counterfactual_by_period.csv")
    for name in (*names, "ppc.csv"):
        written = set(pd.read_csv(fake / "alt" / name, nrows=1).columns)
        assert written <= set(pd.read_csv(real / "its" / name, nrows=1).columns), name
    columns = [list(pd.read_csv(d / "estimates.csv", nrows=1).columns) for d in (fake / "alt", real / "its")]
    assert columns[0] == columns[1]  # written through results.bayesian_rows, as the fit step does
    written = set(pd.read_csv(fake / "crosscheck.csv", nrows=1).columns)
    assert written <= set(pd.read_csv(real / "crosscheck.csv", nrows=1).columns)
    keys = set(json.loads((fake / "alt" / "fit.json").read_text()))
    assert keys == set(json.loads((real / "its" / "fit.json").read_text()))  # both FitRecords


def test_attention_quotes_the_problems_the_fit_recorded(sicily):
    """The box says what fit.json records (few draws: the fit is unreliable), not a re-diagnosis."""
    import json

    from markupsafe import escape

    fit = json.loads((sicily["results"] / "aces" / "its" / "fit.json").read_text())
    box = _section(sicily["html"], "attention")
    quoted = f"fit unreliable: {escape('; '.join(fit['problems']))}"
    assert (quoted in box) == (not fit["reliable"])  # 2 x 200 draws: unreliable here, by ESS
    checks = _section(sicily["html"], "model-checks")
    assert f'<td class="n">{fit["r_hat_max"]:.3f}</td>' in checks


def test_the_series_has_its_counterfactual_spc_view(sicily):
    """One u chart of the region's monthly series: limits from the 36 months before the ban,
    runs around their median, and the verdict against the model's course without the ban."""
    from qialign.report.spc_section import cluster_spc, signals
    from qialign.results import FIT_FILES

    text = _section(sicily["html"], "spc")
    assert "u chart" in text and text.count("<figure>") == 1
    cf = pd.read_csv(sicily["results"] / "aces" / "its" / FIT_FILES["counterfactual"])
    w = cluster_spc(cf, "negative_binomial")
    base = cf[cf["period"] < 37]
    assert w.baseline.sum() == len(base) == 36
    assert w.limits.centre == pytest.approx((base["observed"] * base["n"]).sum() / base["n"].sum(), abs=1e-12)
    caption = re.search(r"<figcaption>(.*?)</figcaption>", text, re.S).group(1)
    assert "from 36 baseline periods" in caption and "intervention periods" in caption
    for s in signals(w):
        assert s.split(" (")[0] in caption
