# ruff: noqa: E501  (report prose: long human-readable strings are kept whole for grep-ability)
"""The effects section: per outcome a lead forest plot, the folded table of every Bayesian model and
cross-check, the exposure-time curve and the cluster-specific effects."""

from __future__ import annotations

import numpy as np
import pandas as pd
from markupsafe import escape

from qialign.families import FAMILIES
from qialign.ids import ids_key
from qialign.models import exposure
from qialign.report import estimates as E
from qialign.report import figures
from qialign.report.blocks import FIG, H3, NOTE, TAB, P, Section, slug
from qialign.report.comparable import comparable_blocks
from qialign.report.context import Context, read_json
from qialign.report.tables import DASH, Table, interval_label, is_missing, num, percent, triple
from qialign.results import FIT_FILES, PTE, TATE

LEAD = (
    "Bayesian and frequentist estimates. θ: effect of the intervention over and above the "
    "secular trend at mean alignment (link scale, and natural scale after back-transformation), "
    "conditional (cluster-specific); γ: change in θ per SD of alignment (link scale). "
    "Bayesian and frequentist rows are set side by side only where they estimate the same quantity."
)
TABLE_ESTIMANDS = ("treatment_effect", "treatment_effect_natural", "alignment_interaction")


def effects(ctx: Context) -> Section:
    blocks = [P(LEAD)]
    for outcome in ctx.outcomes:
        blocks.append(H3(ctx.label(outcome), f"effects-{slug(outcome)}"))
        blocks += _outcome_effects(ctx, outcome)
    return Section("effects", "Effects", blocks)


def _outcome_effects(ctx: Context, outcome: str) -> list[dict]:
    primary = ctx.primary(outcome)
    est0 = ctx.estimates(outcome, primary)
    blocks = []
    lead = _effects_forest(ctx, outcome, primary)
    if lead is not None:
        blocks.append(lead)
    blocks += comparable_blocks(ctx.crosscheck(outcome), est0, primary)
    t = _estimates_table(ctx, outcome, est0)
    summary = f"All estimates: {len(t.rows)} rows (every Bayesian model and frequentist cross-check)"
    blocks.append({"kind": "details", "summary": summary, "blocks": [TAB(t)]})
    cc = ctx.crosscheck(outcome)
    if cc is None or cc.empty:
        blocks.append(NOTE("No frequentist cross-check for this outcome (crosscheck.csv absent)."))
    if est0 is not None:
        blocks.append(_all_estimands(est0, primary))
    blocks += _exposure_blocks(ctx, outcome)
    blocks.append(_cluster_forest(ctx, outcome, est0))
    return blocks


def _estimates_table(ctx: Context, outcome: str, est0) -> Table:
    """θ (link and natural scale) and γ of every Bayesian model, then of every cross-check."""
    primary = ctx.primary(outcome)
    th0 = E.row(est0, "treatment_effect")
    linkname = E.link_phrase(th0["scale"], "link scale") if th0 is not None else "link scale"
    natname = E.natural_name(ctx.family(outcome), est0)
    t = Table(
        [
            "Method",
            "Model / estimator",
            f"θ ({linkname})",
            f"θ ({natname})",
            "γ per SD alignment",
            "R-hat (θ)",
            "ESS bulk (θ)",
        ],
        [],
        caption="Bayesian rows: posterior mean and credible interval, conditional (cluster-specific); "
        f"frequentist rows: estimate and {100 * ctx.typed.interval.prob:g}% CI, population-averaged "
        "except the mixed model: on a logit or log link not the same quantity as the Bayesian θ "
        "(see the comparable estimates).",
    )
    for model in ctx.models(outcome):
        est = ctx.estimates(outcome, model)
        if est is None:
            t.rows.append(["Bayesian", model, "not produced", DASH, DASH, DASH, DASH])
            t.row_classes.append("bad")
            continue
        th = E.row(est, "treatment_effect")
        ess = th.get("ess_bulk") if th is not None else None
        t.rows.append(
            [
                "Bayesian",
                model + (" (primary)" if model == primary else ""),
                *(E.interval_text(E.row(est, k)) for k in TABLE_ESTIMANDS),
                num(th.get("r_hat"), 3) if th is not None else DASH,
                DASH if is_missing(ess) else f"{ess:.0f}",
            ]
        )
        t.row_classes.append("primary" if model == primary else "")
    cc = ctx.crosscheck(outcome)
    for method, g in cc.groupby("method", sort=False) if cc is not None and not cc.empty else ():
        g = g.set_index("estimand")
        cells = [E.interval_text(g.loc[k] if k in g.index else None, bayesian=False) for k in TABLE_ESTIMANDS]
        t.rows.append(["Frequentist", E.method_label(str(method)), *cells, DASH, DASH])
        t.row_classes.append("freq")
    return t


def _exposure_blocks(ctx: Context, outcome: str) -> list[dict]:
    """The effect by exposure time of every ``eti`` model, else what the primary model assumes."""
    blocks = []
    for model in ctx.models(outcome):
        if ctx.spec(outcome, model).exposure != "eti":
            continue
        curve = _eti_curve(ctx, outcome, model)
        if curve is None:
            continue
        th = E.row(ctx.estimates(outcome, model), "treatment_effect")
        lab = E.link_phrase(th["scale"], "effect") if th is not None else "effect"
        e = curve["exposure_time"]
        uri = figures.exposure_curve(e, curve["estimate"], curve["lower"], curve["upper"], lab)
        caption = (
            f"Effect by exposure time, model {model}, posterior mean and {interval_label(curve['interval'].iloc[0])}; "
            "θ (treatment_effect) is their unweighted mean over every exposure time."
        )
        blocks += [FIG(uri, caption, "Effect by exposure time"), _tate_pte_text(ctx, outcome, model, e)]
    if blocks:
        return blocks
    spec = ctx.spec(outcome, ctx.primary(outcome))
    desc = {
        "step": "an immediate step: the full effect from a cluster's first intervention period",
        "ramp": f"a linear ramp reaching the full effect after {spec.ramp_periods} period(s)",
        "eti": "one effect per exposure time (no per-exposure-time results found)",
    }[spec.exposure]
    return [P(f"Exposure time: the primary model assumes {escape(desc)}; no exposure-time curve.")]


def _tate_pte_text(ctx: Context, outcome: str, model: str, levels) -> dict:
    """The model's tate and pte with the cross-check's reference ETI row when it is this model's
    (the GEE's, population-averaged on the link scale: beside, not the same quantity, so its
    ``comparable_to`` is blank and it is named by its model)."""
    spec, est = ctx.spec(outcome, model), ctx.estimates(outcome, model)
    (a, b), k = exposure.window(spec, levels), exposure.pte_time(spec, levels)
    cc = ctx.crosscheck(outcome)
    cc = None if cc is None else cc[cc["model"].eq(model)]
    parts = []
    for name, what in (
        (TATE, f"averaged over exposure times {a}-{b} (tate)"),
        (PTE, f"at exposure time {k} (pte)"),
    ):
        text = f"Effect {what}: {E.interval_text(E.row(est, name))}"
        ref = E.reference_row(cc, name)
        if ref is not None:
            text += f"; {E.method_label(ref[0])}, exposure-time indicators (population-averaged): {E.interval_text(ref[1], bayesian=False)}"
        parts.append(text)
    return P(escape(". ".join(parts) + "."))


def _cluster_forest(ctx: Context, outcome: str, est0) -> dict:
    """The primary model's cluster-specific effects (θ + γ·z_j + δ_j) as a forest plot."""
    primary = ctx.primary(outcome)
    ce = ctx.csv(outcome, primary, FIT_FILES["effects"])
    if ce is None or ce.empty:
        return NOTE(f"No cluster_effects.csv for model {escape(primary)}.")
    if ce["estimate"].nunique() == 1:
        return NOTE(
            f"Model {escape(primary)} gives every cluster the same effect θ (no alignment "
            "moderator and no cluster-specific effects): no forest plot of cluster effects."
        )
    natural = "natural_estimate" in ce
    cols = (
        ("natural_estimate", "natural_lower", "natural_upper") if natural else ("estimate", "lower", "upper")
    )
    nat = E.row(est0, "treatment_effect_natural" if natural else "treatment_effect")
    overall = (float(nat["estimate"]), float(nat["lower"]), float(nat["upper"])) if nat is not None else None
    log = natural and FAMILIES[ctx.family(outcome)].exp_natural
    ce = ce.sort_values("cluster", key=ids_key)
    labels = [
        f"{c} ({s})" if "site" in ce and not is_missing(s) else str(c)
        for c, s in zip(ce["cluster"], ce.get("site", ce["cluster"]), strict=True)
    ]
    uri = figures.forest(
        labels,
        *(ce[c].to_numpy(float) for c in cols),
        xlabel=ce["natural_scale"].iloc[0] if natural else str(ce["scale"].iloc[0]),
        overall=overall,
        null=1.0 if log else 0.0,
        log=log,
        better=ctx.better(outcome),
    )
    caption = (
        f"Cluster-specific effects (θ + γ·z_j + δ_j), model {primary}, with intervals; "
        "diamond: effect at mean alignment."
    )
    return FIG(uri, caption, "Forest plot of cluster-specific effects")


def _true_effect(ctx: Context, outcome: str) -> float | None:
    """The simulated treatment effect (link scale) of a synthetic trial, from its truth.json."""
    if not ctx.synthetic:
        return None
    truth = read_json(ctx.truth_path)
    value = ((truth or {}).get("outcomes", {}).get(outcome) or {}).get("treatment_effect")
    return None if value is None else float(value)


def _labelled(label: str, r: pd.Series) -> str:
    """A forest row's label with what the row estimates (conditional / population-averaged)."""
    kind = E.kind_text(r)
    return f"{label}, {kind}" if kind else label


def _effects_forest(ctx: Context, outcome: str, primary: str) -> dict | None:
    """The lead figure of an outcome: θ of every Bayesian model (primary first) and of the reference
    frequentist cross-check, on the natural scale (link scale for gaussian), the truth if synthetic."""
    natural = FAMILIES[ctx.family(outcome)].exp_natural
    name = "treatment_effect_natural" if natural else "treatment_effect"
    rows = []
    for model in sorted(ctx.models(outcome), key=lambda m: m != primary):
        r = E.row(ctx.estimates(outcome, model), name)
        if r is not None:
            primary_word = " (primary)" if model == primary else ""
            rows.append((_labelled(f"Bayesian, {model}{primary_word}", r), r))
    pair = E.comparable_reference(ctx.crosscheck(outcome), ctx.estimates(outcome, primary), name)
    if pair is not None:  # the cross-check beside the Bayesian row of the same quantity only
        method, freq, bayes = pair
        if bayes.name != name:
            rows.append((_labelled(f"Bayesian, {primary}", bayes), bayes))
        rows.append((_labelled(E.method_label(method), freq), freq))
    if not rows:
        return None
    truth = _true_effect(ctx, outcome)
    if truth is not None and natural:
        truth = float(np.exp(truth))
    uri = figures.forest(
        [label for label, _ in rows],
        *(np.array([float(r[k]) for _, r in rows]) for k in ("estimate", "lower", "upper")),
        xlabel=str(rows[0][1]["scale"]),
        null=1.0 if natural else 0.0,
        log=natural,
        better=ctx.better(outcome),
        truth=truth,
    )
    caption = "Effect over and above the secular trend at mean alignment, with intervals"
    if pair is not None:
        caption += f"; the {E.method_label(pair[0])} row sits beside the Bayesian row of the same quantity"
    caption += (
        "; dotted line: the true simulated conditional value (synthetic data)." if truth is not None else "."
    )
    return FIG(uri, caption, f"Forest plot of the effect estimates for {ctx.label(outcome)}")


def _all_estimands(est: pd.DataFrame, model: str) -> dict:
    columns = ["Estimand", "What it is", "Scale", "Estimate", "Interval", "R-hat", "ESS bulk"]
    t = Table(columns, [], numeric={3, 5, 6})
    for name, r in est.iterrows():
        e, lo, hi = triple(r["estimate"], r.get("lower"), r.get("upper"))
        if name == "prob_beats_trend":
            e = percent(r["estimate"])
        ival = DASH if is_missing(r.get("lower")) else f"{lo} to {hi}"
        t.rows.append(
            [
                str(name),
                E.kind_text(r) or DASH,
                str(r.get("scale", "")),
                e,
                ival,
                num(r.get("r_hat"), 3),
                DASH if is_missing(r.get("ess_bulk")) else f"{r['ess_bulk']:.0f}",
            ]
        )
    return {"kind": "details", "summary": f"All estimands of model {model}", "blocks": [TAB(t)]}


def _eti_curve(ctx: Context, outcome: str, model: str) -> pd.DataFrame | None:
    """The fit's per-exposure-time effects (``exposure_effects.csv``, columns
    ``EXPOSURE_EFFECT_COLUMNS``), or None when the fit wrote none."""
    ex = ctx.csv(outcome, model, FIT_FILES["exposure_effects"])
    return None if ex is None or ex.empty else ex
