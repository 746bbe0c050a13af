# ruff: noqa: E501  (report prose: long human-readable strings are kept whole for grep-ability)
"""Outcome over time: observed per period by arm, with the primary model's counterfactual."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from markupsafe import escape

from qialign.families import FAMILIES
from qialign.report import figures
from qialign.report.blocks import FIG, H3, NOTE, P, Section, slug
from qialign.report.context import Context
from qialign.report.tables import is_missing
from qialign.results import FIT_FILES

LEAD = (
    "Observed outcome per period, cells aggregated by arm (dot area ∝ patients), with what the primary "
    "model expects without the intervention over all clusters and, for the clusters already under the "
    "intervention, the counterfactual next to the model fit; and the secular trend f(t) itself, at baseline "
    "(mean alignment and covariates, without cluster, cluster-period or seasonal effects)."
)


def wmean(x, w, log=False):
    """The ``w``-weighted mean of the finite ``x`` (geometric when ``log``)."""
    x, w = np.asarray(x, float), np.asarray(w, float)
    ok = np.isfinite(x) & (w > 0)
    if not ok.any():
        return np.nan
    if log:
        return float(np.exp(np.sum(w[ok] * np.log(x[ok])) / w[ok].sum()))
    return float(np.sum(w[ok] * x[ok]) / w[ok].sum())


def outcome_ylabel(ctx: Context, outcome: str) -> str:
    fam, unit = ctx.family(outcome), ctx.unit(outcome)
    if FAMILIES[fam].kind == "binary":
        return "proportion"
    if FAMILIES[fam].kind == "count":
        exp = ctx.exposure(outcome)
        if not exp:
            return "count per patient"
        return f"rate per {exp.replace('_', ' ')[:-1] if exp.endswith('s') else exp}"
    if fam == "lognormal":
        return f"geometric mean{f' ({unit})' if unit else ''}"
    return f"mean{f' ({unit})' if unit else ''}"


def time_trends(ctx: Context) -> Section:
    blocks = [P(LEAD)]
    for outcome in ctx.outcomes:
        blocks.append(H3(ctx.label(outcome), f"trend-{slug(outcome)}"))
        blocks += _outcome_trend(ctx, outcome)
    return Section("time-trends", "Outcome over time", blocks)


def _outcome_trend(ctx: Context, outcome: str) -> list[dict]:
    fam, model = ctx.family(outcome), ctx.primary(outcome)
    label, ylabel = ctx.label(outcome), outcome_ylabel(ctx, outcome)
    cells = ctx.parquet(outcome, "cells.parquet")
    by_period = ctx.csv(outcome, model, FIT_FILES["counterfactual_by_period"])
    if cells is None or cells.empty:
        return [NOTE("No prepared cells: no observed outcome over time.", "bad")]
    observed = observed_by_period(cells, fam)
    if by_period is None or by_period.empty:
        blocks = [
            NOTE(
                f"No {FIT_FILES['counterfactual_by_period']} for model {escape(model)}: observed data only, no fitted trend."
            )
        ]
        uri = figures.time_series(observed, ylabel)
        return [*blocks, FIG(uri, f"{label} over calendar time by arm (observed).", f"{label} over time")]
    iv = by_period["interval"].iloc[0]
    note = f"bands: {iv} over posterior draws of each period's patient-weighted mean; secular trend f(t) at baseline"
    uri = figures.time_series(observed.merge(by_period, on="period", how="left"), ylabel, band_note=note)
    caption = (
        f"{label} over calendar time by arm, with the expected course without the intervention and the "
        f"secular trend f(t) alone (no cluster, cluster-period or seasonal effects; model {model})."
    )
    return [FIG(uri, caption, f"{label} over time")]


def observed_by_period(cells: pd.DataFrame, fam: str) -> pd.DataFrame:
    """Per period and arm: the observed proportion, rate or mean and the patients behind it."""
    stat = FAMILIES[fam].total_column
    den = "exposure" if stat == "count" and "exposure" in cells else "n"
    rows = []
    for t, g in cells.groupby("period"):
        row = {"period": t}
        for arm, name in ((0, "control"), (1, "intervention")):
            a = g[g["treated"] == arm]
            v = a[stat].sum() / a[den].sum() if len(a) and a[den].sum() > 0 else np.nan
            row[f"observed_{name}"] = math.exp(v) if fam == "lognormal" and not is_missing(v) else v
            row[f"n_{name}"] = a["n"].sum()
        rows.append(row)
    return pd.DataFrame(rows)
