# ruff: noqa: E501  (report prose: long human-readable strings are kept whole for grep-ability)
"""Model checks: each fit's own record (``fit.json``: reliability, R-hat, ESS, divergences, E-BFMI,
problems), the posterior predictive check and the PSIS-LOO comparison."""

from __future__ import annotations

import numpy as np
import pandas as pd
from markupsafe import escape

from qialign.families import FAMILIES
from qialign.report import figures
from qialign.report.blocks import FIG, H3, NOTE, TAB, P, Section, slug
from qialign.report.context import Context
from qialign.report.tables import DASH, Table, is_missing, num, percent
from qialign.report.trends import wmean
from qialign.results import FIT_FILES, PARETO_K_BAD

FIT_COLUMNS = [
    "Outcome",
    "Model",
    "Reliable",
    "Retried",
    "Max R-hat",
    "Min ESS bulk",
    "Min ESS tail",
    "Divergences",
    "Min E-BFMI",
    "Problems",
]
#: loo.csv columns shown, with their headers
LOO_HEADERS = {
    "model": "model",
    "rank": "rank",
    "elpd": "elpd",
    "se": "se",
    "p": "p_loo",
    "elpd_diff": "Δ elpd",
    "dse": "SE of Δ",
    "weight": "weight",
    "n_pareto_k_bad": f"cells k > {PARETO_K_BAD:g}",
    "max_pareto_k": "max k",
}


def model_checks(ctx: Context) -> Section:
    th = ctx.thresholds
    blocks = [
        P(
            f"Thresholds: R-hat ≤ {th['r_hat_max']}, bulk and tail ESS ≥ {th['ess_bulk_min']:g} / "
            f"{th['ess_tail_min']:g}, divergences ≤ {th['divergences_max']}, E-BFMI ≥ {th['ebfmi_min']}. "
            "A fit that fails is retried once (higher target acceptance, longer tuning) and otherwise flagged."
        ),
        TAB(_fits_table(ctx)),
    ]
    for outcome in ctx.outcomes:
        blocks.append(H3(ctx.label(outcome), f"checks-{slug(outcome)}"))
        blocks.append(_ppc(ctx, outcome))
        blocks.append(_loo(ctx, outcome))
    return Section("model-checks", "Model checks", blocks)


def _whole(v) -> str:
    return DASH if is_missing(v) else f"{float(v):.0f}"


def _fits_table(ctx: Context) -> Table:
    """One row per fit, from its record."""
    t = Table(FIT_COLUMNS, [], numeric={4, 5, 6, 7, 8})
    for outcome in ctx.outcomes:
        for model in ctx.models(outcome):
            fit = ctx.fit(outcome, model)
            if fit is None:
                t.rows.append([ctx.label(outcome), model, "unknown", DASH, *[DASH] * 5, "fit.json missing"])
                t.row_classes.append("bad")
                continue
            ebfmi, rel = fit.ebfmi, fit.reliable
            t.rows.append(
                [
                    ctx.label(outcome),
                    model,
                    "yes" if rel else ("NO" if rel is False else "unknown"),
                    "yes" if fit.retried else "no",
                    num(fit.r_hat_max, 3),
                    _whole(fit.ess_bulk_min),
                    _whole(fit.ess_tail_min),
                    DASH if fit.divergences is None else str(fit.divergences),
                    num(min(ebfmi), 2) if isinstance(ebfmi, list) and ebfmi else DASH,
                    "; ".join(map(str, fit.problems or [])) or "none",
                ]
            )
            t.row_classes.append("bad" if rel is False else "")
    return t


def _ppc(ctx: Context, outcome: str) -> dict:
    """Observed against predicted mean per cluster-period, with the fit's Bayesian p-values."""
    fam, model = ctx.family(outcome), ctx.primary(outcome)
    ppc = ctx.csv(outcome, model, FIT_FILES["ppc"])
    if ppc is None or ppc.empty or not {"observed_mean", "predicted_mean"} <= set(ppc):
        return NOTE(f"No posterior predictive check (ppc.csv) for model {escape(model)}.")
    one_per_cp = not ppc.duplicated(["cluster", "period"]).any()
    agg = pd.DataFrame(
        [
            {
                "cluster": c,
                "period": p_,
                "treated": int(g["treated"].max()),
                "observed": wmean(g["observed_mean"], g["n"]),
                "predicted": wmean(g["predicted_mean"], g["n"]),
                "lower": g["lower"].iloc[0] if one_per_cp else np.nan,
                "upper": g["upper"].iloc[0] if one_per_cp else np.nan,
            }
            for (c, p_), g in ppc.groupby(["cluster", "period"])
        ]
    )
    scale = " (standardised scale)" if FAMILIES[fam].kind == "continuous" else ""
    xl = ("proportion" if FAMILIES[fam].kind == "binary" else "mean per patient") + scale
    cover = ppc["inside"].mean() if "inside" in ppc else np.nan
    fit = ctx.fit(outcome, model)
    pp = (fit.ppc if fit is not None else None) or {}
    txt = f"Cells inside their predictive interval: {percent(cover)}" if not is_missing(cover) else ""
    if pp:
        txt += f"; Bayesian p-values given the fitted cluster-period effects: χ² {num(pp.get('p_chi2'), 2)}, SD of cell means {num(pp.get('p_sd'), 2)}"
    if "p_mixed_cluster_period" in pp:
        txt += f"; mixed p-values (χ² of cells around their mean with the random effects redrawn from their fitted distribution, which can detect overdispersion the model lacks): new cluster-periods {num(pp.get('p_mixed_cluster_period'), 2)}, new clusters {num(pp.get('p_mixed_cluster'), 2)}"
    if pp:
        txt += " (p-values near 0 or 1 flag misfit)"
    caption = (
        f"Posterior predictive check, model {model}: observed vs predicted mean per cluster-period"
        + (
            " with predictive intervals"
            if one_per_cp
            else " (cells aggregated; intervals are per cell, see coverage)"
        )
        + (f". {txt}." if txt else ".")
    )
    return FIG(figures.ppc(agg, xl, with_intervals=one_per_cp), caption, "Posterior predictive check")


def _loo_cell(column: str, v) -> str:
    if column == "model":
        return str(v)
    if column in ("rank", "n_pareto_k_bad"):
        return DASH if is_missing(v) else str(int(v))
    return num(v, 2)


def _loo(ctx: Context, outcome: str) -> dict:
    """The PSIS-LOO table of the outcome's models (loo.csv), bad Pareto k rows marked."""
    loo = ctx.csv(outcome, "loo.csv")
    if loo is None or loo.empty:
        if len(ctx.models(outcome)) < 2:
            return NOTE("One model variant only: no LOO comparison.")
        return NOTE("No LOO comparison (loo.csv missing).")
    keep = [c for c in LOO_HEADERS if c in loo]
    lt = Table(
        [LOO_HEADERS[c] for c in keep],
        [],
        numeric=set(range(1, len(keep))),
        caption="PSIS-LOO comparison (higher elpd is better; Δ relative to the best).",
    )
    for _, r in loo.iterrows():
        lt.rows.append([_loo_cell(c, r[c]) for c in keep])
        lt.row_classes.append("bad" if r["n_pareto_k_bad"] > 0 else "")
    return TAB(lt)
