"""The synthesis report (reports/synthesis/report.html): the trials' ward effects pooled and
regressed on alignment, on the per-trial page's template and figure style.

Reads only what the synthesis step wrote (``SYNTHESIS_FILES``): estimates.csv, wards.csv and
synthesis.json.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from pathlib import Path

import pandas as pd
from markupsafe import escape

from qialign.data.io import read_results_csv
from qialign.methods import label as method_label
from qialign.provenance import package_versions
from qialign.report.blocks import FIG, LIST, NOTE, TAB, P, Section
from qialign.report.render import _environment
from qialign.report.synthesis_figures import effect_vs_alignment, trial_forest
from qialign.report.tables import DASH, Table, interval_label, num, percent, with_interval
from qialign.results import SYNTHESIS_FILES

SECTION_IDS = ["summary", "forest", "alignment", "heterogeneity", "methods", "provenance", "logs"]
PHRASE = {"log_or": "log odds ratio", "log_rr": "log rate ratio", "smd": "standardised mean difference"}


class Synthesis:
    """The step's outputs, read once."""

    def __init__(self, results: Path):
        self.est = read_results_csv(results / SYNTHESIS_FILES["estimates"])
        self.wards = read_results_csv(results / SYNTHESIS_FILES["wards"])
        self.record = json.loads((results / SYNTHESIS_FILES["record"]).read_text())
        self.block = self.record["block"]
        self.within = self.block["alignment"] == "within"
        self.phrase = PHRASE[self.block["scale"]]
        scale = pd.Series(self.record["standardisation"]["scale"], index=self.wards.index)
        self.wards["alignment_se_z"] = self.wards["alignment_se"] / scale

    def row(self, estimand: str, approach: str = "bayesian") -> pd.Series | None:
        hit = self.est[(self.est["estimand"] == estimand) & (self.est["approach"] == approach)]
        return None if hit.empty else hit.iloc[0]

    def shown(self, estimand: str, approach: str = "bayesian") -> str:
        r = self.row(estimand, approach)
        if r is None:
            return DASH
        if r["scale"] in ("probability", "share") and pd.isna(r["lower"]):
            return percent(r["estimate"])
        shown = interval_label(str(r["interval"]), bayesian=approach == "bayesian")
        return with_interval(r["estimate"], r["lower"], r["upper"], shown)

    @property
    def slope_unit(self) -> str:
        return "per within-trial SD of alignment" if self.within else "per SD of alignment across all wards"


def _summary(s: Synthesis) -> Section:
    n_trials, n_wards = len(s.record["trials"]), len(s.wards)
    blocks = [
        P(
            f"{n_wards} wards of {n_trials} trials pooled on the {escape(s.phrase)} scale "
            f"({'lower' if s.block['better'] == 'lower' else 'higher'} is better)."
        ),  # fmt: skip
        NOTE(
            "The alignment slope is <strong>within-trial</strong>: alignment was standardised within each "
            "trial (synthesis alignment: within), so the slope compares wards of the same trial and says "
            "nothing about trials whose alignment differs on average."
            if s.within
            else "Alignment is on a <strong>common scale</strong> across trials (same instrument and "
            "scoring): the slope uses differences between wards within and across trials."
        ),
    ]
    t = Table(["Estimand", "Bayesian synthesis", "Meta-regression (REML, Knapp-Hartung)"], [], numeric={1, 2})
    rows = [
        ("pooled_effect", "Pooled effect at mean alignment"),
        ("alignment_slope", f"Alignment slope ({s.slope_unit})"),
        ("variance_explained", "Between-ward variance explained by alignment"),
        *[
            (e, f"Predicted effect, new ward at the {e[-2:]}th percentile of alignment (prediction interval)")
            for e in s.est["estimand"]
            if e.startswith("predicted_effect_q")
        ],  # fmt: skip
        (
            "prob_beats_trend_bottom_quartile",
            "P(new ward's effect beats the trend), bottom alignment quartile",
        ),
        ("prob_beats_trend_top_quartile", "P(new ward's effect beats the trend), top alignment quartile"),
    ]
    seen = set()
    for estimand, text in rows:
        if estimand in seen:
            continue
        seen.add(estimand)
        t.rows.append([text, s.shown(estimand), s.shown(estimand, "frequentist")])
    blocks.append(TAB(t))
    if not s.record["reliable"]:
        problems = escape("; ".join(s.record["problems"]))
        blocks.append(NOTE(f"The synthesis fit failed its diagnostics: {problems}", "bad"))
    return Section("summary", "Summary", blocks)


def _forest(s: Synthesis) -> Section:
    r = s.row("pooled_effect")
    src = trial_forest(s.wards, (r["estimate"], r["lower"], r["upper"]), s.phrase, s.block["better"])
    cap = (
        "Each ward's effect from its own trial's fit (posterior mean ± 1.96 SD), grouped by trial; the "
        "diamond is the synthesis's pooled effect at mean alignment with its credible interval."
    )
    return Section("forest", "Forest plot by trial and ward", [FIG(src, cap, "Forest plot of ward effects")])


def _alignment(s: Synthesis) -> Section:
    b, f = (s.row("pooled_effect"), s.row("alignment_slope")), (
        s.row("pooled_effect", "frequentist"), s.row("alignment_slope", "frequentist"))  # fmt: skip
    lines = {"Bayesian synthesis": (b[0]["estimate"], b[1]["estimate"])}
    if f[0] is not None:
        lines["meta-regression (plug-in alignment)"] = (f[0]["estimate"], f[1]["estimate"])
    xlabel = (
        "Alignment (standardised within trial)" if s.within else "Alignment (standardised over all wards)"
    )
    src = effect_vs_alignment(s.wards, lines, xlabel, s.phrase)
    cap = (
        "Every ward of every trial: its effect (± 1.96 posterior SD) against its measured alignment "
        "(± 1.96 SE), coloured by trial, with the synthesis's line and the naive meta-regression's."
    )
    lead = f"Slope {s.slope_unit}: {s.shown('alignment_slope')}."
    return Section("alignment", "Effect against alignment", [FIG(src, cap, "Effect against alignment")], lead)


def _heterogeneity(s: Synthesis) -> Section:
    t = Table(["Quantity", "Bayesian synthesis", "Meta-regression"], [], numeric={1, 2})
    t.rows.append(["SD between trials", s.shown("sd_between_trial"), DASH])
    ward_sd = [s.shown("sd_between_ward"), s.shown("sd_between_ward", "frequentist")]
    t.rows.append(["SD between wards (beyond alignment)", *ward_sd])
    t.rows.append(["Share of between-ward variance explained by alignment", s.shown("variance_explained"),
                   s.shown("variance_explained", "frequentist")])  # fmt: skip
    mr = s.record["meta_regression"]
    note = P(f"Meta-regression: τ² = {num(mr['tau2'], 4)}, QE = {num(mr['qe'], 2)} on {mr['df']} df, "
             f"R² = {percent(mr['r2'])} (reduction of τ² from the intercept-only model).")  # fmt: skip
    return Section("heterogeneity", "Heterogeneity explained", [TAB(t), note])


def _methods(s: Synthesis) -> Section:
    unit = (
        "alignment standardised within each trial (its wards' mean and SD), so the slope is within-trial"
        if s.within
        else "alignment standardised over every ward of every trial (one instrument and scoring)"
    )
    items = [
        "Inputs: each trial's posterior draws of its per-ward effects θ + γz<sub>j</sub> + δ<sub>j</sub> "
        f"on the {escape(s.phrase)} scale, summarised by their mean and covariance (a multivariate normal "
        "approximation of the trial's ward-effect posterior, keeping the correlation the shared θ and γ "
        "induce).",
        "Model: b<sub>ij</sub> = μ + u<sub>i</sub> + β z<sub>ij</sub> + e<sub>ij</sub>, "
        "u ~ N(0, τ<sub>trial</sub>²), e ~ N(0, τ<sub>ward</sub>²); trial i's ward means ~ "
        "MVN(b<sub>i</sub>, S<sub>i</sub>).",
        f"Errors-in-variables: {unit}; the measured score a<sub>ij</sub> ~ N(z<sub>ij</sub>, "
        "se<sub>ij</sub>²) with se from scores.csv, and true alignment z<sub>ij</sub> ~ "
        "N(ν<sub>i</sub>, ω²) (a mean per trial, one spread); true alignment given the score enters by "
        "regression calibration with its uncertainty carried into the ward variance.",
        "Variance explained: β² Var(z) / (β² Var(z) + τ<sub>ward</sub>²) per draw. A new ward's effect: "
        "μ + β z + τ<sub>trial</sub>ε₁ + τ<sub>ward</sub>ε₂ (prediction interval); P(beats the trend) for a "
        "new ward drawn from the bottom / top quarter of the wards' true alignment.",
        f"Cross-check: {escape(method_label('meta_regression_reml_kh'))} of the wards' posterior means "
        "(posterior variances, correlations dropped) on the plug-in standardised scores (measurement "
        "error ignored).",
        "Caveat: each trial's ward-effect posterior already carries that trial's own shrinkage of ward "
        "effects towards its fitted line; the synthesis treats it as the trial's likelihood, with the "
        "covariance's eigenvalues floored at half the mean ward variance (a trial that shrinks its wards' "
        "own deviations to 0 otherwise claims to know them exactly off its line).",
        f"Sampler: nutpie, {s.block['sampler']['chains']} chains × {s.block['sampler']['draws']} draws "
        f"(tuning {s.block['sampler']['tune']}), seed {s.block['seed']}; intervals equal-tailed "
        f"{percent(s.block['interval']['prob'])}.",
    ]
    return Section("methods", "Methods", [LIST(items)])


def _provenance(s: Synthesis) -> Section:
    t = Table(
        ["Trial", "Outcome", "Model", "Wards", "Fit reliable", "Seed", "File", "SHA-256"], [], numeric={3, 5}
    )
    for tr in s.record["trials"]:
        for name, f in tr["files"].items():
            fit = [tr["model"], str(len(tr["wards"])), "yes" if tr["reliable"] else "NO", str(tr["seed"])]
            t.rows.append([tr["trial"], tr["label"], *fit, f"{name}: {f['path']}", f["sha256"][:16]])
    r = s.record
    diag = P(f"Synthesis fit: R-hat max {num(r['r_hat_max'], 3)}, bulk ESS min {num(r['ess_bulk_min'], 0)}, "
             f"{r['divergences']} divergence(s); compile {num(r['timings']['compile_s'], 1)} s, sampling "
             f"{num(r['timings']['sample_s'], 1)} s. qialign {escape(r['versions'].get('qialign', DASH))}, "
             f"commit {escape(str(r['git_commit']))}.")  # fmt: skip
    return Section("provenance", "Provenance of every trial result used", [TAB(t), diag])


def _logs(logs: list[Path], out_html: Path) -> Section:
    items = [f'<a href="{escape(os.path.relpath(p, out_html.parent))}">{escape(str(p))}</a>' for p in logs]
    return Section("logs", "Logs", [LIST(items) if items else P("No logs given.")])


#: what the attention box says when the list is empty
ALL_CLEAR = (
    "Every trial's fit is reliable, every ward has an alignment score and the synthesis fit passed "
    "its diagnostics."
)


def attention(s: Synthesis) -> list[tuple[str, str]]:
    out = []
    for t in s.record["trials"]:
        if not t["reliable"]:
            out.append((t["trial"], f"its fit is unreliable: {'; '.join(t['problems'])}"))
        if t["unscored"]:
            out.append((t["trial"], f"wards without an alignment score: {', '.join(t['unscored'])}"))
    if not s.record["reliable"]:
        out.append(("synthesis", "; ".join(s.record["problems"])))
    return out


def render_synthesis_report(results: Path, out_html: Path, logs: list[Path] | None = None) -> None:
    """Write the self-contained synthesis page from ``results`` (results/synthesis)."""
    s = Synthesis(Path(results))
    sections = [_summary(s), _forest(s), _alignment(s), _heterogeneity(s), _methods(s), _provenance(s),
                _logs(logs or [], out_html)]  # fmt: skip
    synthetic = all(t["synthetic"] for t in s.record["trials"])
    titles = ", ".join(t["trial"] for t in s.record["trials"])
    html = (
        _environment()
        .get_template("template.html.j2")
        .render(
            cfg={
                "design": "synthesis across trials",
                "outcomes": {t["trial"]: t["outcome"] for t in s.record["trials"]},
            },
            title=f"Synthesis across trials: does alignment explain the effect? ({titles})",
            trial="synthesis",
            synthetic=synthetic,
            attention=attention(s),
            all_clear=ALL_CLEAR,
            sections=sections,
            generated=_dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            version=package_versions().get("qialign", "unknown"),
        )
    )
    out_html.parent.mkdir(parents=True, exist_ok=True)
    out_html.write_text(html, encoding="utf-8")
