# ruff: noqa: E501  (report prose: long human-readable strings are kept whole for grep-ability)
"""The summary for a non-technical reader (a hospital board): one paragraph per outcome and a glossary.

Every number is an estimand row of the primary model's ``estimates.csv`` (qialign.results
vocabulary), formatted once by :func:`figures_of`: the effect on the natural scale with its
interval, P(beats the secular trend), and the change of the effect per SD of alignment (gamma).
"""

from __future__ import annotations

import math

from markupsafe import escape

from qialign.families import FAMILIES
from qialign.report import estimates as E
from qialign.report.blocks import NOTE, P, Section, plural
from qialign.report.context import Context
from qialign.report.tables import interval_label, is_missing, percent, triple

WHAT_WAS_DONE = {
    "stepped_wedge": "The intervention was introduced in {clusters} at staggered times (a stepped-wedge design), so every cluster was observed both before and after it started.",
    "controlled_before_after": "The intervention was introduced in some of {clusters}; the others carried on as usual and show what happened anyway (a controlled before-after design).",
    "interrupted_time_series": "The outcome was followed over time before and after the intervention started in {clusters} (an interrupted time series): the trend before the start shows what would have happened anyway.",
}

GLOSSARY = [
    ("Cluster", "a ward, unit or region that starts the intervention as a whole."),
    (
        "Secular trend",
        "the change over calendar time that would have happened anyway, without the intervention (new staff, seasons, other initiatives).",
    ),
    (
        "Odds ratio, rate ratio, ratio of means",
        "how many times larger the outcome was under the intervention than expected from the trend alone: 1 means no change, below 1 lower, above 1 higher.",
    ),
    (
        "Difference",
        "how much larger the outcome was under the intervention than expected from the trend alone: 0 means no change.",
    ),
    (
        "Credible interval (CrI)",
        "the range that contains the true effect with the stated probability, given the data and the model.",
    ),
    (
        "Probability of beating the trend",
        "the probability, given the data and the model, that the intervention moved the outcome in the better direction beyond the secular trend.",
    ),
    (
        "Alignment",
        "how closely the priorities of a cluster's clinical staff and its managers agree (from the staff survey), in standard deviations (SD) across clusters.",
    ),
    (
        "Control chart (SPC)",
        "a cluster's series over time with limits from before the intervention; points beyond the limits, long runs on one side or too few crossings of the centre line are signals of change.",
    ),
]

#: P(beats trend) at or above which the evidence reads "strong" / "moderate"; at or below the lower
#: bounds the intervention probably did worse
SURE, LIKELY = 0.95, 0.8


def certainty(p: float) -> str:
    """The plain-words reading of P(beats the trend)."""
    if is_missing(p):
        return "How sure we can be was not computed."
    if p >= SURE:
        return "The evidence that it did better than the trend alone is strong."
    if p >= LIKELY:
        return "It probably did better than the trend alone, but the evidence is moderate."
    if p > 1 - LIKELY:
        return "The data cannot tell whether it did better or worse than the trend alone."
    if p > 1 - SURE:
        return "It probably did worse than the trend alone."
    return "The evidence that it did worse than the trend alone is strong."


def figures_of(r) -> tuple[str, str, str, str]:
    """(estimate, lower, upper, interval label) of an estimand row, as printed."""
    e, lo, hi = triple(r["estimate"], r.get("lower"), r.get("upper"))
    return e, lo, hi, interval_label(r.get("interval"))


def _num(text: str) -> str:
    return f"<span class='num'>{escape(text)}</span>"


def _effect(ctx: Context, outcome: str, est) -> str:
    fam = FAMILIES[ctx.family(outcome)]
    nat = E.row(est, "treatment_effect_natural")
    if nat is None:
        return "The effect beyond the trend was not estimated."
    e, lo, hi, lab = figures_of(nat)
    none = "1" if fam.exp_natural else "0"
    scale = escape(E.natural_name(ctx.family(outcome), est))
    direction = "lower" if ctx.better(outcome) == "lower" else "higher"
    return (
        f"Beyond the secular trend, the {scale} under the intervention was {_num(e)} "
        f"({escape(lab)} {_num(lo)} to {_num(hi)}; {none} would mean no change, and {direction} is better here)."
    )


def _alignment(est, better: str) -> str:
    gamma = E.row(est, "alignment_interaction")
    if gamma is None or is_missing(gamma["estimate"]):
        return "Whether alignment mattered was not analysed for this outcome."
    e, lo, hi, lab = figures_of(gamma)
    phrase = escape(E.link_phrase(gamma["scale"]))
    low, high = float(gamma["lower"]), float(gamma["upper"])
    if math.isnan(low) or math.isnan(high) or low <= 0 <= high:
        verdict = "so the data show no clear difference between better and worse aligned clusters"
    else:
        helps = (high < 0) == (better == "lower")  # the effect moves in the better direction with alignment
        verdict = f"so clusters whose clinical and managerial priorities were better aligned clearly gained {'more' if helps else 'less'} from the intervention"
    return (
        f"Per 1 SD higher alignment the effect changed by {_num(e)} on the {phrase} scale "
        f"({escape(lab)} {_num(lo)} to {_num(hi)}), {verdict}."
    )


def paragraph(ctx: Context, outcome: str, clusters: int) -> dict:
    """The plain-words paragraph of one outcome (its primary model)."""
    est = ctx.estimates(outcome, ctx.primary(outcome))
    name = f"<strong>{escape(ctx.label(outcome))}.</strong> "
    if est is None:
        return NOTE(name + "No results for this outcome: see “needs attention”.", "bad")
    prob = E.row(est, "prob_beats_trend")
    p = float(prob["estimate"]) if prob is not None else math.nan
    done = WHAT_WAS_DONE[ctx.design].format(clusters=plural(clusters, "cluster"))
    sure = f"The probability that the intervention did better than the trend alone is {_num(percent(p))}. {certainty(p)}"
    parts = [escape(done), _effect(ctx, outcome, est), sure, _alignment(est, ctx.better(outcome))]
    fit = ctx.fit(outcome, ctx.primary(outcome))
    if fit is not None and fit.reliable is False:
        parts.append(
            "<em>Caution: the model's computations did not fully converge, so these numbers are provisional (see “needs attention”).</em>"
        )
    return P(name + " ".join(parts))


def plain_summary(ctx: Context) -> Section:
    clusters = len((ctx.json("data.json") or {}).get("clusters") or [])
    blocks = [paragraph(ctx, o, clusters) for o in ctx.outcomes]
    blocks.append({"kind": "h3", "text": "Words used here", "id": "glossary"})
    blocks.append(
        {
            "kind": "list",
            "items": [P(f"<strong>{escape(t)}</strong>: {escape(d)}")["html"] for t, d in GLOSSARY],
        }
    )
    lead = "For readers without statistical training: what was done, what changed beyond the trend, how sure we are and whether alignment mattered, per outcome (primary model)."
    return Section("plain-summary", "In plain words", blocks, lead)
