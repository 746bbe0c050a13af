# ruff: noqa: E501  (report prose: long human-readable strings are kept whole for grep-ability)
"""The alignment section: scores per cluster (profiles, ranked, table), change between waves, and
each outcome's cluster effects against alignment."""

from __future__ import annotations

import numpy as np
import pandas as pd
from markupsafe import escape

from qialign.ids import ids_key, sort_ids
from qialign.report import estimates as E
from qialign.report import figures
from qialign.report.attention import unscored_text
from qialign.report.blocks import FIG, H3, NOTE, TAB, P, Section, slug
from qialign.report.context import Context
from qialign.report.tables import DASH, Table, count, is_missing, num, triple
from qialign.results import FIT_FILES
from qialign.waves import ONE_WAVE, file_order, resolve_wave, wave_label, wave_labels

PROPAGATION_TEXT = {
    "plugin": "Propagation <strong>plugin</strong>: each cluster's posterior-mean alignment is used as if "
    "known, so the measurement error of the survey is not carried into γ (rows <code>bayes</code>).",
    "draws": "Propagation <strong>draws</strong>: the outcome model is refitted over posterior draws of "
    "alignment and the posteriors pooled (method of composition), carrying the survey's measurement error "
    "into γ; the survey does not learn from the outcome (rows <code>bayes_draws</code>).",
    "joint": "Propagation <strong>joint</strong>: the survey's measurement model and the outcome model are "
    "one graph, so alignment and γ are estimated together (rows <code>bayes_joint</code>).",
}


def _moderator_wave(wave, scores: pd.DataFrame) -> str:
    """The label of the wave that moderates the effect: ``alignment.wave``, else the first wave in the
    order ``scores.csv`` records (:func:`qialign.waves.resolve_wave`)."""
    try:
        return resolve_wave(wave, file_order(scores))
    except ValueError:  # the configured wave is not scored: the section says so
        return wave_label(wave) or ONE_WAVE


SCORE_COLUMNS = [
    "Cluster",
    "Wave",
    "Alignment",
    "Interval",
    "Clinical respondents",
    "Managerial respondents",
    "Profile r",
    "r_wg clinical",
    "r_wg managerial",
]


def _reliability_note(ctx: Context, scores: pd.DataFrame, wave) -> list:
    """The moderating wave's score reliability R and what it does to γ under the propagation used."""
    r = _wave_reliability(scores, wave)
    if r is None:
        return []
    text = (
        f"Reliability of the wave-{escape(wave)} score over clusters: <strong>R = {num(r, 2)}</strong> "
        "(between-cluster variance of the score over its total, from the scores' own standard errors)."
    )
    if ctx.alignment_propagation == "joint":
        text += " The joint model measures alignment in the same fit, so γ is not diluted by R."
    else:
        text += (
            f" With propagation <strong>{escape(ctx.alignment_propagation)}</strong> the score enters as "
            f"measured, so γ is attenuated towards 0 by about this factor (regression dilution): the "
            f"unattenuated modification is roughly γ / R. <code>propagation: joint</code> avoids it."
        )
    return [P(text)]


def _wave_reliability(scores: pd.DataFrame, wave: str) -> float | None:
    """The moderating wave's reliability R from ``scores.csv``, or None."""
    if "reliability" not in scores or "wave" not in scores:
        return None
    r = scores.loc[wave_labels(scores["wave"]) == wave, "reliability"].dropna()
    return None if r.empty else float(r.iloc[0])


def _gamma_line(ctx: Context, outcome: str, reliability: float | None) -> list:
    """γ of the primary model with the score's reliability R beside it and what R does to it: under
    plugin and draws E[γ̂] ≈ R γ (regression dilution), so γ̂ / R is the rough unattenuated value."""
    r = E.row(ctx.estimates(outcome, ctx.primary(outcome)), "alignment_interaction")
    if r is None or is_missing(r.get("estimate")):
        return []
    e, lo, hi = triple(r["estimate"], r.get("lower"), r.get("upper"))
    text = f"γ (per SD of alignment) = <strong>{e}</strong> ({lo} to {hi})"
    if reliability is None:
        return [P(text + "; the score's reliability is not known.")]
    text += f"; score reliability <strong>R = {num(reliability, 2)}</strong>"
    if ctx.alignment_propagation == "joint":
        return [
            P(text + ": the joint model measures alignment in the same fit, so γ is not attenuated by R.")
        ]
    if reliability > 0:
        text += (
            f": with propagation {escape(ctx.alignment_propagation)} γ is attenuated to about R γ, so the "
            f"unattenuated modification is roughly {num(float(r['estimate']) / reliability, 3)} (γ / R)."
        )
    return [P(text)]


def _unscored(ctx: Context) -> list[str]:
    """Clusters any fit analysed without an alignment score (from the fits' records)."""
    fits = [ctx.fit(o, m) for o in ctx.outcomes for m in ctx.models(o)]
    return sort_ids({c for f in fits if f is not None for c in f.unscored_clusters or []})


def alignment(ctx: Context) -> Section:
    scores = ctx.csv("alignment", "scores.csv")
    if not ctx.alignment_on:
        note = NOTE(
            "No alignment source is configured (<code>alignment.source: none</code>): the effect is "
            "not modelled as depending on clinical-managerial alignment.",
            "bad",
        )
        return Section("alignment", "Alignment", [note])
    if scores is None or scores.empty:
        note = NOTE("No alignment scores were found (alignment/scores.csv missing or empty).", "bad")
        return Section("alignment", "Alignment", [note])
    wave = _moderator_wave(ctx.alignment_wave, scores)
    method = str(scores["method"].iloc[0]) if "method" in scores else ctx.alignment_method
    blocks = [
        P(
            f"Source: <strong>{escape(ctx.alignment_source)}</strong>, method <strong>{escape(method)}</strong>; "
            f"wave {escape(wave)} moderates the effect. Alignment enters the models standardised over clusters "
            "(mean 0, SD 1), so γ is per SD of alignment. "
            + PROPAGATION_TEXT.get(ctx.alignment_propagation, "")
        )
    ]
    blocks += _reliability_note(ctx, scores, wave)
    unscored = _unscored(ctx)
    if unscored:
        blocks.append(NOTE(escape(unscored_text(unscored, wave)), "bad"))
    sw = scores[wave_labels(scores["wave"]) == wave] if "wave" in scores else scores
    if sw.empty:
        sw = scores
        blocks.append(NOTE(f"No scores for wave {escape(wave)}; showing all waves.", "bad"))
    blocks += _profiles(ctx, sw, wave)
    ranked = figures.ranked_intervals(
        sw["cluster"].tolist(),
        sw["alignment"],
        sw.get("lower", np.nan * sw["alignment"]),
        sw.get("upper", np.nan * sw["alignment"]),
        f"alignment (wave {wave})",
    )
    blocks.append(
        FIG(ranked, "Alignment per cluster, ranked, with bootstrap intervals.", "Ranked alignment scores")
    )
    blocks.append(TAB(_scores_table(ctx, scores)))
    blocks += _alignment_change(ctx)
    reliability = _wave_reliability(scores, wave)
    for outcome in ctx.outcomes:
        blocks.append(H3(f"{ctx.label(outcome)}: effect against alignment", f"moderation-{slug(outcome)}"))
        blocks += _gamma_line(ctx, outcome, reliability)
        blocks.append(_moderation(ctx, outcome))
    return Section("alignment", "Alignment", blocks)


def _profiles(ctx: Context, sw: pd.DataFrame, wave: str) -> list[dict]:
    """Mean domain scores by role per cluster, when the scores carry them."""
    domains = ctx.alignment_domains
    if not domains or not all(f"clinical_{d}" in sw for d in domains):
        return []
    vals = sw[[f"{r}_{d}" for r in ("clinical", "managerial") for d in domains]].to_numpy(float)
    scale = "domain score (0–100)" if np.nanmax(vals) > ctx.survey_scale_max else "domain mean"
    prof = sw.sort_values("cluster", key=ids_key)
    return [
        FIG(
            figures.alignment_profiles(prof, domains, scale),
            f"Survey profiles by role, wave {escape(wave)}: mean domain scores of clinical and managerial staff per cluster.",
            "Survey profiles by role per cluster",
        )
    ]


def _scores_table(ctx: Context, scores: pd.DataFrame) -> Table:
    """Every cluster's score per wave; respondent counts are people, so suppressed."""
    t = Table(
        SCORE_COLUMNS,
        [],
        numeric={2, 4, 5, 6, 7, 8},
        caption=f"Alignment scores (higher = more aligned). Respondent counts under {ctx.below} shown as “<{ctx.below}”.",
    )
    by = [c for c in ("wave_order", "cluster") if c in scores]  # waves in their recorded order
    for _, r in scores.sort_values(by, key=ids_key, kind="stable").iterrows():
        e, lo, hi = triple(r["alignment"], r.get("lower"), r.get("upper"))
        t.rows.append(
            [
                str(r["cluster"]),
                str(r.get("wave", DASH)),
                e,
                DASH if is_missing(r.get("lower")) else f"{lo} to {hi}",
                count(r.get("n_clinical"), ctx.below),
                count(r.get("n_managerial"), ctx.below),
                num(r.get("profile_r"), 2),
                num(r.get("rwg_clinical"), 2),
                num(r.get("rwg_managerial"), 2),
            ]
        )
    return t


def _moderation(ctx: Context, outcome: str) -> dict:
    """The primary model's cluster effects against standardised alignment, with θ + γ·z."""
    model = ctx.primary(outcome)
    est = ctx.estimates(outcome, model)
    ce = ctx.csv(outcome, model, FIT_FILES["effects"])
    if est is None or ce is None or ce.empty or "alignment_z" not in ce or ce["alignment_z"].isna().all():
        return NOTE("No cluster effects with alignment for the primary model.")
    th, lo, hi = (
        E.row(est, k) for k in ("treatment_effect", "effect_low_alignment", "effect_high_alignment")
    )
    line = None
    z = ce["alignment_z"].to_numpy(float)
    if th is not None and lo is not None and hi is not None:
        q10, q90 = np.quantile(z, [0.1, 0.9])
        line = pd.DataFrame(
            [
                {"z": zz, "estimate": r["estimate"], "lower": r["lower"], "upper": r["upper"]}
                for zz, r in ((q10, lo), (0.0, th), (q90, hi))
            ]
        )
    uri = figures.moderation(
        z,
        ce["estimate"].to_numpy(float),
        ce["lower"].to_numpy(float),
        ce["upper"].to_numpy(float),
        ce["cluster"].tolist(),
        line,
        E.link_phrase(str(ce["scale"].iloc[0])),
    )
    return FIG(
        uri,
        f"Cluster-specific effects (link scale) against standardised alignment, model {model}; line: "
        "θ + γ·z; band through the intervals at the 10th percentile, mean and 90th percentile of z.",
        "Cluster effects against alignment",
    )


def _alignment_change(ctx: Context) -> list[dict]:
    """One ranked-interval figure per later wave: each cluster's change in alignment since the first
    wave (change.csv), when the survey has two waves or more."""
    change = ctx.csv("alignment", "change.csv")
    if change is None or change.empty:
        return []
    blocks = []
    for (w_from, w_to), g in change.groupby(["wave_from", "wave_to"], sort=False):
        g = g.dropna(subset=["difference"])
        if g.empty:
            continue
        uri = figures.ranked_intervals(
            g["cluster"].astype(str).tolist(),
            g["difference"],
            g.get("lower", np.nan * g["difference"]),
            g.get("upper", np.nan * g["difference"]),
            f"change in alignment, wave {w_from} to wave {w_to}",
        )
        caption = (
            f"Change in alignment per cluster from wave {w_from} to wave {w_to}, with intervals (ranked)."
        )
        blocks.append(FIG(uri, escape(caption), "Change in alignment between survey waves"))
    return blocks
