"""The report's summary prints estimates.csv's numbers: a simulated trial through the real steps
(simulate, prepare, alignment, fit with few draws, cross-check, collect, render), then every number
of the primary model's summary card is looked up in the collected estimates.csv and formatted by
the report's own formatters (``qialign.report.estimates``, ``qialign.report.tables``)."""

from __future__ import annotations

import re

import pandas as pd
import pytest
from markupsafe import escape

from qialign.report import estimates as E
from qialign.report import render_report
from qialign.report.tables import percent
from qialign.steps.collect import collect_estimates
from qialign.steps.crosscheck import crosscheck_step
from sim_pipeline import fit_through_steps, write_trial

SIM = {
    "design": "controlled_before_after",
    "periods": 6,
    "clusters_per_site": [5, 5],
    "schedule": {"start": 2, "controls": 5, "randomise_order": True},
    "patients": {"per_period": 15},
    "survey": {"enabled": False},
    "fidelity": {"enabled": False},
    "write_alignment": True,
    "outcomes": {
        "y": {
            "family": "bernoulli",
            "baseline": 0.3,
            "treatment_effect": -0.5,
            "alignment_main": 0.1,
            "alignment_interaction": 0.3,
            "sd_treatment": 0.0,
            "sd_site": 0.0,
            "sd_cluster": 0.15,
            "sd_cluster_period": 0.05,
            "betas": {},
        }
    },
}
TRIAL = {
    "id": "numbers",
    "design": "controlled_before_after",
    "outcomes": {"y": {"family": "bernoulli", "better": "lower"}},
    "alignment": {"source": "given"},
    "models": [{"id": "main"}],
    "interval": {"prob": 0.9},
    "sampler": {"chains": 2, "draws": 100, "tune": 150},
    "diagnostics": {"retry": False},
}


@pytest.fixture(scope="module")
def trial(tmp_path_factory):
    work = tmp_path_factory.mktemp("numbers")
    res = work / "results" / "numbers"
    config, _ = write_trial(work, SIM, 7, TRIAL)
    fit_through_steps(config, "y", "main", res)
    crosscheck_step(config, "y", res / "y", res / "alignment" / "scores.csv", res / "y" / "crosscheck.csv")
    collect_estimates(
        [res / "y" / "main" / "estimates.csv"], [res / "y" / "crosscheck.csv"], res / "estimates.csv"
    )
    out = work / "report.html"
    render_report(res, config, out)
    table = pd.read_csv(res / "estimates.csv")
    return out.read_text(encoding="utf-8"), table


def card(html: str) -> str:
    m = re.search(r'id="summary-y".*?</ul>', html, re.S)
    assert m, "summary card of outcome y missing"
    return m.group(0)


def rows(table: pd.DataFrame, approach: str) -> pd.DataFrame:
    return table[table["approach"].eq(approach) & table["outcome"].eq("y")].set_index("estimand")


def test_summary_numbers_are_the_estimates_rows(trial):
    html, table = trial
    text, bayes = card(html), rows(table, "bayesian")
    assert (bayes["model"] == "main").all() and (bayes["interval"].dropna().isin(["eti90", ""])).all()
    nat, link = bayes.loc["treatment_effect_natural"], bayes.loc["treatment_effect"]
    assert nat["scale"] == "odds ratio" and link["scale"] == "log-odds"
    printed = {
        "odds ratio": f"odds ratio {E.interval_text(nat)}",
        "log-odds": E.interval_text(link),
        "probability": percent(bayes.loc["prob_beats_trend", "estimate"]),
        "risk difference": E.interval_text(bayes.loc["marginal_difference"]),
        "gamma": E.interval_text(bayes.loc["alignment_interaction"]),
        "low": E.interval_text(bayes.loc["effect_low_alignment"]),
        "high": E.interval_text(bayes.loc["effect_high_alignment"]),
    }
    assert "90% CrI" in printed["odds ratio"]
    for what, value in printed.items():
        assert f"<span class='num'>{escape(value)}</span>" in text, what
    for what in ("alignment_interaction", "effect_low_alignment", "effect_high_alignment"):
        ratio = E.natural_of_link(bayes.loc[what], "bernoulli")
        assert f"<span class='num'>{escape(ratio)}</span>" in text, what
    assert f'<div class="headline">{escape(printed["odds ratio"])}</div>' in text
    # the probability sentence: P(theta < 0), better: lower
    assert f"lower than expected): <span class='num'>{escape(printed['probability'])}</span>" in text


def test_summary_quotes_the_reference_cross_check(trial):
    html, table = trial
    freq = table[table["approach"].eq("frequentist") & table["reference"].astype(bool)]
    ref = freq[freq["estimand"].eq("treatment_effect_natural")].iloc[0]
    value = E.interval_text(ref, bayesian=False)
    assert "95% CI" in value or "90% CI" in value
    assert f"({escape(E.method_label(ref['method']))}): <span class='num'>{escape(value)}</span>" in card(
        html
    )


def test_the_formatter_rounds_what_estimates_csv_holds(trial):
    """The printed odds ratio and its bounds are estimates.csv's, to the printed digits."""
    html, table = trial
    nat = rows(table, "bayesian").loc["treatment_effect_natural"]
    m = re.search(r"odds ratio ([\d.]+) \(90% CrI ([\d.]+) to ([\d.]+)\)", card(html))
    assert m, card(html)
    for printed, value in zip(m.groups(), nat[["estimate", "lower", "upper"]], strict=True):
        digits = len(printed.split(".")[1]) if "." in printed else 0
        assert float(printed) == pytest.approx(value, abs=0.5 * 10**-digits + 1e-12)


def section(html: str, sid: str) -> str:
    m = re.search(rf'<section[^>]*id="{sid}".*?</section>', html, re.S)
    assert m, f"section {sid} missing"
    return m.group(0)


def test_only_comparable_rows_sit_side_by_side_and_say_what_they_are(trial):
    """Through the real steps: the GEE odds ratio (population-averaged) shares one table row with
    the Bayesian population-averaged odds ratio for a new cluster, never with the conditional
    theta; the page says so in words, and labels the conditional and in-sample rows."""
    html, table = trial
    bayes = rows(table, "bayesian")
    freq = table[table["approach"].eq("frequentist") & table["reference"].astype(bool)]
    ref = freq[freq["estimand"].eq("treatment_effect_natural")].iloc[0]
    pa = bayes.loc["pa_odds_ratio"]
    assert ref["comparable_to"] == "pa_odds_ratio" and ref["conditioning"] == "population-averaged"
    assert (pa["conditioning"], pa["population"]) == ("population-averaged", "new cluster")
    assert bayes.loc["marginal_difference", "population"] == "in-sample"
    effects = section(html, "effects")
    assert "Only rows that estimate the same quantity sit side by side here." in effects
    method = str(escape(E.method_label(ref["method"])))
    trs = re.findall(r"<tr.*?</tr>", effects, re.S)
    pair = [tr for tr in trs if "pa_odds_ratio" in tr and method in tr]
    assert len(pair) == 1, pair
    for text in (E.interval_text(pa), E.interval_text(ref, bayesian=False)):
        assert str(escape(text)) in pair[0], text
    assert "population-averaged, for a new cluster" in pair[0]
    assert str(escape(E.interval_text(bayes.loc["treatment_effect_natural"]))) not in pair[0]
    text = card(html)
    assert "conditional, cluster-specific" in text
    assert "in the analysed cells, conditional on their fitted cluster effects" in text
    assert (
        "The same quantity two ways, population-averaged, for a new cluster odds ratio: "
        f"Bayesian <span class='num'>{escape(E.interval_text(pa))}</span>"
    ) in text
    assert "population-averaged effects for a new cluster" in section(html, "methods")
