# ruff: noqa: E501  (report prose: long human-readable strings are kept whole for grep-ability)
"""The baseline table by condition (control vs intervention cluster-periods) and by sequence.

From the prepare step's outputs: each outcome's ``cells.parquet`` (sufficient statistics per cell,
qialign.families ``cell_columns``) and the analysed rows' covariates (``rows.parquet``). Per
condition: clusters, cluster-periods, analysed units, the outcome summary (events and %, count and
rate per exposure unit, mean and SD; lognormal: geometric mean and SD of log y), covariate means
and SDs or category counts. Counts of people go through :meth:`Context.count` (``<5``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from markupsafe import escape

from qialign.families import FAMILIES
from qialign.report.blocks import TAB, P, Section
from qialign.report.consort import NEVER, start_periods
from qialign.report.context import Context
from qialign.report.tables import DASH, Table, count, num

CONDITIONS = (("Control", 0), ("Intervention", 1))


def outcome_summary(ctx: Context, outcome: str, cells: pd.DataFrame, table: str | None) -> str:
    """The outcome's summary over ``cells``: events (%), count (rate), mean (SD)."""
    if cells.empty:
        return DASH
    fam = FAMILIES[ctx.family(outcome)]
    n = float(cells["n"].sum())
    if fam.kind == "binary":
        events = float(cells["events"].sum())
        return f"{ctx.count(events, table)} events ({num(100 * events / n, 1)}%)"
    if fam.kind == "count":
        total, exposure = float(cells["count"].sum()), float(cells["exposure"].sum())
        unit = ctx.unit(outcome) or "exposure unit"
        return f"{count(total, 0)} ({num(total / exposure)} per {unit})"
    mean = float(cells["sum"].sum()) / n
    sd = np.sqrt(max(float(cells["sumsq"].sum()) - n * mean**2, 0.0) / max(n - 1, 1))
    if fam.name == "lognormal":
        return f"geometric mean {num(np.exp(mean))} (SD of log {num(sd)})"
    return f"mean {num(mean)} (SD {num(sd)})"


def covariate_rows(ctx: Context, rows: pd.DataFrame, table: str | None) -> list[list[str]]:
    """Covariates by condition: numeric mean (SD), categorical n (%) per category."""
    out = []
    for c in [c for c in ctx.covariates if c in rows]:
        parts = {arm: rows[rows["treated"] == arm][c] for _, arm in CONDITIONS}
        if pd.api.types.is_numeric_dtype(rows[c]):
            out.append(
                [
                    f"{c}, mean (SD)",
                    *(f"{num(v.mean())} ({num(v.std())})" if len(v) else DASH for v in parts.values()),
                ]
            )
            continue
        for level in sorted(rows[c].dropna().unique().tolist(), key=str):
            out.append(
                [
                    f"{c}: {level}",
                    *(
                        f"{ctx.count((v == level).sum(), table)} ({num(100 * (v == level).mean(), 1)}%)"
                        if len(v)
                        else DASH
                        for v in parts.values()
                    ),
                ]
            )
    return out


def by_condition(ctx: Context) -> Table:
    t = Table(
        ["Characteristic", *(label for label, _ in CONDITIONS)],
        [],
        caption="Analysed data by condition: cluster-periods under control and under the intervention.",
    )
    covariates_from = None
    for outcome in ctx.outcomes:
        cells = ctx.parquet(outcome, "cells.parquet")
        if cells is None or cells.empty:
            continue
        table = (ctx.json(outcome, "prepared.json") or {}).get("table")
        covariates_from = covariates_from or (outcome, table)
        arms = [cells[cells["treated"] == arm] for _, arm in CONDITIONS]
        if len(t.rows) == 0:
            t.rows.append(["Clusters", *(str(a["cluster"].nunique()) for a in arms)])
            t.rows.append(
                ["Cluster-periods", *(str(len(a[["cluster", "period"]].drop_duplicates())) for a in arms)]
            )
        what = "patients" if ctx.people(table) else "units"
        t.rows.append(
            [f"{ctx.label(outcome)}: {what} analysed", *(ctx.count(a["n"].sum(), table) for a in arms)]
        )
        t.rows.append([f"{ctx.label(outcome)}", *(outcome_summary(ctx, outcome, a, table) for a in arms)])
    if covariates_from is not None:
        rows = ctx.parquet(covariates_from[0], "rows.parquet")
        if rows is not None and not rows.empty:
            t.rows += covariate_rows(ctx, rows, covariates_from[1])
    if any(ctx.people((ctx.json(o, "prepared.json") or {}).get("table")) for o in ctx.outcomes):
        t.caption += f" Counts of patients under {ctx.below} are shown as “<{ctx.below}”."
    return t


def by_sequence(ctx: Context) -> Table:
    starts = start_periods(ctx)
    t = Table(
        [
            "Sequence",
            "Outcome",
            "Clusters",
            "Control: analysed",
            "Control",
            "Intervention: analysed",
            "Intervention",
        ],
        [],
        numeric={2, 3, 5},
        caption="The same by sequence (clusters grouped by the period they start the intervention).",
    )
    for outcome in ctx.outcomes:
        cells = ctx.parquet(outcome, "cells.parquet")
        if cells is None or cells.empty:
            continue
        table = (ctx.json(outcome, "prepared.json") or {}).get("table")
        seq = cells["cluster"].astype(str).map(lambda c: starts.get(c))
        keys = sorted({s for s in seq if s is not None and s == s}) + ([None] if seq.isna().any() else [])
        for k in keys:
            part = cells[seq.isna()] if k is None else cells[seq == k]
            arms = [part[part["treated"] == arm] for _, arm in CONDITIONS]
            row = [
                NEVER if k is None else f"starts in period {k}",
                ctx.label(outcome),
                str(part["cluster"].nunique()),
            ]
            for a in arms:
                row += [ctx.count(a["n"].sum(), table), outcome_summary(ctx, outcome, a, table)]
            t.rows.append(row)
    return t


def baseline(ctx: Context) -> Section:
    blocks = [TAB(by_condition(ctx)), TAB(by_sequence(ctx))]
    blocks.append(
        P(
            escape(
                "Rates are crude (not adjusted for the secular trend): intervention cells are on average later in calendar time than control cells, so the comparison across columns is not the effect."
            )
        )
    )
    return Section("baseline", "Baseline table", blocks)
