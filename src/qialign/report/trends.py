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
    "model expects without the intervention: over all clusters (the secular trend as the model "
    "sees it, for these clusters) and, for the clusters already under the intervention, the counterfactual "
    "next to the model fit."
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


def _rate_factor(ctx: Context, outcome: str) -> pd.DataFrame | None:
    """n / exposure per cluster-period (to turn counts per patient into rates per exposure unit)."""
    cells = ctx.parquet(outcome, "cells.parquet")
    if cells is None or "exposure" not in cells:
        return None
    g = cells.groupby(["cluster", "period"], as_index=False)[["n", "exposure"]].sum()
    g["factor"] = g["n"] / g["exposure"]
    return g[["cluster", "period", "factor"]]


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
    cf = ctx.csv(outcome, model, FIT_FILES["counterfactual"])
    if cf is not None and not cf.empty:
        factor = _rate_factor(ctx, outcome) if FAMILIES[fam].kind == "count" else None
        note = "band: n-weighted average of the cluster-period intervals (approximate)"
        uri = figures.time_series(_expected_by_period(cf, factor, fam == "lognormal"), ylabel, band_note=note)
        caption = f"{label} over calendar time by arm, with the expected course without the intervention (model {model})."
        return [FIG(uri, caption, f"{label} over time")]
    blocks = [NOTE(f"No counterfactual.csv for model {escape(model)}: observed data only, no fitted trend.")]
    cells = ctx.parquet(outcome, "cells.parquet")
    if cells is None or cells.empty:
        return [*blocks, NOTE("No prepared cells either.", "bad")]
    uri = figures.time_series(observed_by_period(cells, fam), ylabel)
    return [*blocks, FIG(uri, f"{label} over calendar time by arm (observed).", f"{label} over time")]


def _expected_by_period(cf: pd.DataFrame, factor: pd.DataFrame | None, log: bool) -> pd.DataFrame:
    """Per period: observed by arm, the counterfactual over all clusters and over the treated ones."""
    cf = cf.copy()
    if factor is not None:
        cf = cf.merge(factor, on=["cluster", "period"], how="left")
        for c in [c for c in cf if c == "observed" or c.endswith(("_mean", "_lower", "_upper"))]:
            cf[c] = cf[c] * cf["factor"]
    rows = []
    for t, g in cf.groupby("period"):
        c, i = g[g["treated"] == 0], g[g["treated"] == 1]
        rows.append(
            {
                "period": t,
                "observed_control": wmean(c["observed"], c["n"], log),
                "observed_intervention": wmean(i["observed"], i["n"], log),
                "n_control": c["n"].sum(),
                "n_intervention": i["n"].sum(),
                "without_all": wmean(g["without_mean"], g["n"], log),
                "without_all_lower": wmean(g["without_lower"], g["n"], log),
                "without_all_upper": wmean(g["without_upper"], g["n"], log),
                "without_treated": wmean(i["without_mean"], i["n"], log) if len(i) else np.nan,
                "actual_treated": wmean(i["actual_mean"], i["n"], log) if len(i) else np.nan,
                "deseasonalised": (
                    wmean(g["deseasonalised_mean"], g["n"], log) if "deseasonalised_mean" in g else np.nan
                ),
            }
        )
    return pd.DataFrame(rows)


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
