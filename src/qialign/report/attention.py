"""The "needs attention" box: missing results and the problems the steps recorded.

Fit problems come from each fit's own record (``fit.json``: ``reliable``, ``problems``), not from a
second diagnosis of ``diagnostics.csv``; LOO from ``loo.csv``; cross-check failures from their note.
"""

from __future__ import annotations

import pandas as pd

from qialign.report import estimates as E
from qialign.report.context import Context
from qialign.report.tables import num
from qialign.results import FEW_EVENTS, MIN_ROLE_RESPONDENTS, PARETO_K_BAD

SIDE_WORDS = {-1: "below 0", 1: "above 0", 0: "includes 0"}


#: what the attention box says when the list is empty
ALL_CLEAR = (
    "Every fit is reliable, every diagnostic passed, PSIS-LOO is trustworthy and alignment scores "
    "are present."
)


def attention(ctx: Context) -> list[tuple[str, str]]:
    """Scan every fit, LOO, cross-check and alignment file for problems; return (where, what)."""
    for outcome in ctx.outcomes:
        if ctx.json(outcome, "prepared.json") is None and ctx.parquet(outcome, "cells.parquet") is None:
            ctx.flag(outcome, "not prepared: prepared.json and cells.parquet are missing")
        for model in ctx.models(outcome):
            _fit_problems(ctx, outcome, model)
        _bad_pareto_k(ctx, outcome)
        for _, r in E.failed_crosschecks(ctx.crosscheck(outcome)).iterrows():
            ctx.flag(f"{outcome} / {r['method']}", f"frequentist cross-check failed: {r.get('note', '')}")
        _answers_disagree(ctx, outcome)
        _few_events(ctx, outcome)
    _alignment_problems(ctx)
    return ctx.attention


def _fit_problems(ctx: Context, outcome: str, model: str) -> None:
    """A missing fit, a missing record, or a fit its record calls unreliable (with its problems)."""
    where = f"{outcome} / {model}"
    if ctx.estimates(outcome, model) is None:
        ctx.flag(where, "no estimates (estimates.csv missing): the fit was not produced")
        return
    fit = ctx.fit(outcome, model)
    if fit is None:
        ctx.flag(where, "fit.json missing: reliability unknown")
    elif fit.reliable is False:
        reasons = "; ".join(map(str, fit.problems or [])) or "no reason recorded"
        retry = " after one retry" if fit.retried else ""
        ctx.flag(where, f"fit unreliable{retry}: {reasons}")
    if fit is not None and (fit.gamma_modes or {}).get("note"):  # chains dropped in a minor mode
        ctx.flag(where, fit.gamma_modes["note"])
    if fit is not None and fit.unscored_clusters:
        ctx.flag(where, unscored_text(fit.unscored_clusters, ctx.alignment_wave))


def unscored_text(clusters: list[str], wave) -> str:
    """The named warning for clusters the alignment moderator had no score for (never a silent zero)."""
    which = f"wave {wave}" if wave is not None else "the moderating wave"
    return (
        f"no usable alignment score in {which} for cluster(s) {', '.join(map(str, clusters))}: "
        "analysed at the mean alignment of the others (z = 0), so whether alignment changes their "
        "effect is assumed, not measured"
    )


def _bad_pareto_k(ctx: Context, outcome: str) -> None:
    loo = ctx.csv(outcome, "loo.csv")
    if loo is None or loo.empty:
        return
    for _, r in loo[loo["n_pareto_k_bad"] > 0].iterrows():
        ctx.flag(
            f"{outcome} / {r['model']}",
            f"PSIS-LOO: {int(r['n_pareto_k_bad'])} cell(s) with Pareto k > {PARETO_K_BAD:g} "
            f"(max {num(r['max_pareto_k'], 2)}): LOO unreliable for this model",
        )


def _side(r) -> int:
    """-1 / +1: the interval excludes 0 below / above; 0: it includes 0."""
    return -1 if r["upper"] < 0 else 1 if r["lower"] > 0 else 0


def _answers_disagree(ctx: Context, outcome: str) -> None:
    """Flag a Bayesian primary and the reference cross-check that disagree about 'no effect' (one
    interval excludes 0 and the other does not, or they exclude it on opposite sides)."""
    bayes = E.row(ctx.estimates(outcome, ctx.primary(outcome)), "treatment_effect")
    ref = E.reference_row(ctx.crosscheck(outcome), "treatment_effect")
    if bayes is None or ref is None:
        return
    method, freq = ref
    if _side(bayes) != _side(freq):
        ctx.flag(
            outcome,
            f"Bayesian and frequentist answers differ: θ {num(bayes['estimate'], 3)} "
            f"({num(bayes['lower'], 3)} to {num(bayes['upper'], 3)}, {SIDE_WORDS[_side(bayes)]}) vs "
            f"{E.method_label(method)} {num(freq['estimate'], 3)} ({num(freq['lower'], 3)} to "
            f"{num(freq['upper'], 3)}, {SIDE_WORDS[_side(freq)]})",
        )


def _few_events(ctx: Context, outcome: str) -> None:
    """Flag a binary or count outcome with few events under control or under the intervention."""
    cells = ctx.parquet(outcome, "cells.parquet")
    stat = next((c for c in ("events", "count") if cells is not None and c in cells), None)
    if stat is None:
        return
    by = cells.groupby("treated")[stat].sum().reindex([0, 1], fill_value=0)
    if by.min() < FEW_EVENTS:
        ctx.flag(
            outcome,
            f"few events: {int(by[0])} under control, {int(by[1])} under the intervention "
            f"(fewer than {FEW_EVENTS}): the effect is imprecise and leans on the priors",
        )


def _alignment_problems(ctx: Context) -> None:
    """Missing or empty scores, or role groups of one or two (``alignment.source: none`` is a
    deliberate choice, said in the methods and alignment sections, not a problem)."""
    if not ctx.alignment_on:
        return
    scores = ctx.csv("alignment", "scores.csv")
    if scores is None:
        ctx.flag("alignment", "alignment/scores.csv missing")
    elif scores.empty:
        ctx.flag("alignment", "alignment/scores.csv has no scores")
    else:
        _small_role_groups(ctx, scores)


def _small_role_groups(ctx: Context, scores: pd.DataFrame) -> None:
    """Flag clusters whose clinical or managerial group has under MIN_ROLE_RESPONDENTS answers: their
    score and its interval rest on one or two people."""
    counts = [c for c in ("n_clinical", "n_managerial") if c in scores]
    if not counts:
        return
    small = scores[(scores[counts] < MIN_ROLE_RESPONDENTS).any(axis=1)]
    if small.empty:
        return
    shown = ", ".join(
        f"{r['cluster']} (wave {r.get('wave', '?')}: "
        + ", ".join(f"{c[2:]} {int(r[c])}" for c in counts if r[c] < MIN_ROLE_RESPONDENTS)
        + ")"
        for _, r in small.head(6).iterrows()
    )
    more = f" and {len(small) - 6} more" if len(small) > 6 else ""
    ctx.flag(
        "alignment",
        f"role groups with fewer than {MIN_ROLE_RESPONDENTS} respondents: {shown}{more}; their scores and "
        "intervals rest on one or two people",
    )
