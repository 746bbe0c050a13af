# ruff: noqa: E501  (report prose: long human-readable strings are kept whole for grep-ability)
"""The summary: one card per outcome (verdict and key numbers) and the overview table."""

from __future__ import annotations

import numpy as np
from markupsafe import escape

from qialign.families import FAMILIES
from qialign.report import estimates as E
from qialign.report.blocks import LIST, NOTE, TAB, P, Section, slug
from qialign.report.context import Context
from qialign.report.tables import DASH, Table, percent

LEAD = (
    "Effects are over and above the secular (calendar-time) trend, at the clusters' mean "
    "alignment, from the primary model (the first in the trial's <code>models</code> list). "
    "CrI: Bayesian credible interval; CI: frequentist confidence interval."
)
OVERVIEW_COLUMNS = [
    "Outcome",
    "Primary model",
    "Effect beyond the secular trend",
    "P(beats trend)",
    "Alignment: change per SD",
    "Fit",
]


def verdict(p: float, better: str) -> str:
    """The sentence for P(beats trend) = ``p``."""
    if np.isnan(p):
        return "The probability that the intervention beat the secular trend was not computed."
    direction = "lower" if better == "lower" else "higher"
    if p >= 0.95:
        return f"The intervention very probably beat the secular trend (outcome {direction} than expected)."
    if p >= 0.8:
        return "The intervention probably beat the secular trend, but the evidence is not strong."
    if p > 0.2:
        return "It is unclear whether the intervention beat the secular trend."
    if p > 0.05:
        return "The intervention probably did not beat the secular trend."
    return "The intervention very probably did worse than the secular trend."


def summary(ctx: Context) -> Section:
    cards = []
    overview = Table(
        OVERVIEW_COLUMNS, [], caption="Key numbers per outcome (primary model, effect at mean alignment)."
    )
    for outcome in ctx.outcomes:
        card, row, tone = _outcome_card(ctx, outcome)
        cards.append(card)
        overview.rows.append(row)
        overview.row_classes.append(tone)
    return Section("summary", "Summary", [{"kind": "cards", "cards": cards}, TAB(overview)], LEAD)


def _outcome_card(ctx: Context, outcome: str) -> tuple[dict, list[str], str]:
    """(card, overview row, row class) of one outcome's primary model."""
    fam, model = ctx.family(outcome), ctx.primary(outcome)
    est = ctx.estimates(outcome, model)
    card = {"title": ctx.label(outcome), "id": f"summary-{slug(outcome)}"}
    if est is None:
        card |= {
            "headline": "no result",
            "blocks": [NOTE("No estimates for the primary model: see “needs attention”.", "bad")],
            "tone": "bad",
        }
        return card, [ctx.label(outcome), model, DASH, DASH, DASH, "missing"], "bad"
    prob = E.row(est, "prob_beats_trend")
    p = float(prob["estimate"]) if prob is not None else np.nan
    nat = E.row(est, "treatment_effect_natural")
    headline = f"{E.natural_name(fam, est)} {E.interval_text(nat)}" if nat is not None else DASH
    blocks = [
        P(f"<strong>{escape(verdict(p, ctx.better(outcome)))}</strong>"),
        LIST(_items(ctx, outcome, est, p)),
    ]
    fit = ctx.fit(outcome, model)
    reliable = fit.reliable if fit is not None else None
    if reliable is False:
        blocks.append(NOTE("The primary fit is flagged unreliable; treat these numbers with caution.", "bad"))
    tone = "bad" if reliable is False else ""
    card |= {"headline": headline, "sub": f"model {model}; {fam}", "blocks": blocks, "tone": tone}
    gamma = E.row(est, "alignment_interaction")
    fit_word = "reliable" if reliable else ("UNRELIABLE" if reliable is False else "unknown")
    row = [
        ctx.label(outcome),
        model,
        headline,
        percent(p),
        E.interval_text(gamma) if gamma is not None else DASH,
        fit_word,
    ]
    return card, row, tone


def _num(text: str) -> str:
    return f"<span class='num'>{escape(text)}</span>"


def _items(ctx: Context, outcome: str, est, p: float) -> list[str]:
    """The card's list: effect (natural and link scale), P(beats trend), marginal effect,
    alignment, and the quoted frequentist cross-check."""
    fam = ctx.family(outcome)
    natname = E.natural_name(fam, est)
    nat, link = E.row(est, "treatment_effect_natural"), E.row(est, "treatment_effect")
    effect = f"Effect beyond the secular trend (at mean alignment; conditional, cluster-specific): <span class='num'>{escape(natname)} {escape(E.interval_text(nat))}</span>"
    if link is not None:
        effect += f"; on the link scale {escape(E.link_phrase(link['scale']))} {_num(E.interval_text(link))}"
    items = [
        effect,
        f"Probability the intervention beats the trend (outcome {ctx.better(outcome)} than expected): {_num(percent(p))}",
    ]
    marg = E.row(est, "marginal_difference")
    if marg is not None:
        items.append(
            f"Average absolute effect in the analysed cells, conditional on their fitted cluster effects ({escape(marg['scale'])}): {_num(E.interval_text(marg))}"
        )
    items += _alignment_items(fam, est, natname)
    pair = E.comparable_reference(ctx.crosscheck(outcome), est, "treatment_effect_natural")
    if pair is not None:  # the cross-check beside the Bayesian row of the same quantity
        method, r, bayes = pair
        items.append(
            f"The same quantity two ways, {escape(E.kind_text(bayes))} {escape(bayes['scale'])}: Bayesian {_num(E.interval_text(bayes))}; "
            f"frequentist cross-check ({escape(E.method_label(method))}): {_num(E.interval_text(r, bayesian=False))}"
        )
    return items


def _alignment_items(fam: str, est, natname: str) -> list[str]:
    """γ per SD of alignment and the effect at low and high alignment (natural scale too)."""
    gamma = E.row(est, "alignment_interaction")
    if gamma is None:
        return [
            "Alignment: not in this model (no alignment scores, or the model has no alignment moderator)."
        ]
    lp = E.link_phrase(gamma["scale"])
    ratio = FAMILIES[fam].exp_natural
    txt = f"Alignment: per 1 SD higher clinical-managerial alignment the {escape(lp)} changes by {_num(E.interval_text(gamma))}"
    if ratio:
        txt += f" (the {escape(natname)} is multiplied by {_num(E.natural_of_link(gamma, fam))})"
    items = [txt]
    low, high = E.row(est, "effect_low_alignment"), E.row(est, "effect_high_alignment")
    if low is not None and high is not None:

        def nat_of(r) -> str:
            return f", {escape(natname)} ≈ {_num(E.natural_of_link(r, fam))}" if ratio else ""

        items.append(
            f"At low alignment (10th percentile of clusters): {escape(lp)} {_num(E.interval_text(low))}"
            + nat_of(low)
            + f"; at high alignment (90th percentile): {_num(E.interval_text(high))}"
            + nat_of(high)
        )
    return items
