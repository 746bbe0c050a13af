# ruff: noqa: E501  (report prose: long human-readable strings are kept whole for grep-ability)
"""The design section (clusters by periods diagram) and the data-flow table.

Disclosure control: cell sizes and row counts are suppressed below ``report.suppress_below`` only
when they count people (an outcome recorded per patient, :meth:`Context.people`); a cluster-period
series or a clusters file is printed whole.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from markupsafe import escape

from qialign.ids import natural_key, sort_ids
from qialign.report import figures
from qialign.report.blocks import FIG, NOTE, TAB, P, Section, plural
from qialign.report.context import Context
from qialign.report.tables import DASH, Table, is_missing


@dataclass
class CellMatrix:
    """Clusters (natural order within site) x periods: arm and analysed units per cell."""

    names: list[tuple[str, str]]  # (cluster, site)
    periods: list
    treated: np.ndarray  # 1 / 0 / NaN (no data)
    n: np.ndarray  # analysed units per cell, NaN none
    source: str | None  # the outcome whose cells give the sizes
    table: str | None  # where that outcome was recorded (patients, cluster_periods)


def _first_prepared(ctx: Context) -> str | None:
    return next(
        (o for o in ctx.outcomes if (c := ctx.parquet(o, "cells.parquet")) is not None and not c.empty),
        None,
    )


def cell_matrix(ctx: Context) -> CellMatrix:
    """The design as analysed, from data.json's clusters and the first prepared outcome's cells."""
    data = ctx.json("data.json") or {}
    clusters = data.get("clusters") or []
    source = _first_prepared(ctx)
    cp = None
    if source is not None:
        cells = ctx.parquet(source, "cells.parquet")
        cp = cells.groupby(["cluster", "period"], as_index=False).agg(
            n=("n", "sum"), treated=("treated", "max")
        )
        if not clusters:
            sites = cells.groupby("cluster")["site"].first() if "site" in cells else pd.Series(dtype=str)
            clusters = [{"cluster": c, "site": sites.get(c, "")} for c in sort_ids(cp["cluster"])]
    periods = data.get("periods") or (sorted(cp["period"].unique().tolist()) if cp is not None else [])
    clusters = sorted(clusters, key=lambda c: (natural_key(c.get("site") or ""), natural_key(c["cluster"])))
    names = [(str(c["cluster"]), str(c.get("site") or "")) for c in clusters]
    treated = np.array(
        [[_started(c.get("start_period"), t) for t in periods] for c in clusters], float
    ).reshape(len(names), len(periods))
    n = np.full_like(treated, np.nan)
    if cp is not None:
        idx = {c: i for i, (c, _) in enumerate(names)}
        pidx = {t: j for j, t in enumerate(periods)}
        seen = np.zeros_like(treated, bool)
        for r in cp.itertuples():
            if r.cluster in idx and r.period in pidx:
                n[idx[r.cluster], pidx[r.period]] = r.n
                seen[idx[r.cluster], pidx[r.period]] = True
        treated[~seen] = np.nan
    table = (ctx.json(source, "prepared.json") or {}).get("table") if source else None
    return CellMatrix(names, periods, treated, n, source, table)


def _started(start, period) -> float:
    return 1.0 if start is not None and not is_missing(start) and period >= start else 0.0


def design(ctx: Context) -> Section:
    m = cell_matrix(ctx)
    sites = sorted({s for _, s in m.names if s})
    never = [c for c in (ctx.json("data.json") or {}).get("clusters", []) if c.get("start_period") is None]
    blocks = [
        P(
            f"Design: <strong>{escape(ctx.design.replace('_', ' '))}</strong>; {plural(len(m.names), 'cluster')}"
            + (f" in {plural(len(sites), 'site')}" if sites else "")
            + f", {plural(len(m.periods), 'period')}"
            + (f"; {plural(len(never), 'cluster')} never start (controls)" if never else "")
            + "."
        )
    ]
    if m.names and m.periods:
        below = ctx.below if ctx.people(m.table) else 0
        uri = figures.design_grid(m.names, m.periods, m.treated, m.n, below)
        blocks.append(
            FIG(
                uri,
                _grid_caption(ctx, m, below),
                "Design diagram: clusters by periods, control and intervention cells",
            )
        )
    else:
        blocks.append(NOTE("No cluster or period information found (data.json and cells missing).", "bad"))
    if (ctx.results / "validation.txt").is_file():
        href = escape(ctx.rel(ctx.results / "validation.txt"))
        blocks.append(P(f"Full validation summary: <a href='{href}'>validation.txt</a>."))
    return Section("design", "Design", blocks)


def _grid_caption(ctx: Context, m: CellMatrix, below: int) -> str:
    if not m.source:
        return "Clusters by period (no prepared cells found, so no cell sizes)."
    what = "patients" if ctx.people(m.table) else "cluster-period units"
    suppressed = f"; counts under {below} shown as “<{below}”" if below else ""
    return (
        "Clusters (rows, grouped by site) by period. Shaded: intervention; light: control; white: no data. "
        f"Numbers: {what} analysed for “{ctx.label(m.source)}”{suppressed}."
    )


DATA_FLOW_COLUMNS = [
    "Outcome",
    "Table",
    "Rows read",
    "Missing outcome",
    "Missing covariate",
    "Analysed",
    "Cells (cluster-period × covariates)",
    "Covariates",
]


def data_flow(ctx: Context) -> Section:
    excl = (ctx.json("data.json") or {}).get("exclusions", {})
    t = Table(
        DATA_FLOW_COLUMNS,
        [],
        numeric={2, 3, 4, 5, 6},
        caption="From the data files to the analysed rows.",
    )
    people = False
    for outcome in ctx.outcomes:
        prep = ctx.json(outcome, "prepared.json") or {}
        e = excl.get(outcome) or prep.get("exclusions") or {}
        if not e:
            t.rows.append([ctx.label(outcome), DASH, DASH, DASH, DASH, DASH, DASH, "no record"])
            continue
        table = e.get("table")
        people |= ctx.people(table)

        def n(v, table=table) -> str:
            return ctx.count(v, table)

        by_cov = e.get("missing_by_covariate") or {}
        miss_cov = n(e.get("missing_covariate"))
        if by_cov and e.get("missing_covariate"):
            miss_cov += " (" + ", ".join(f"{k}: {n(v)}" for k, v in by_cov.items() if v) + ")"
        t.rows.append(
            [
                ctx.label(outcome),
                str(table or DASH),
                n(e.get("read")),
                n(e.get("missing_outcome")),
                miss_cov,
                n(e.get("analysed", prep.get("rows"))),
                ctx.count(prep.get("cells"), None),
                ", ".join(e.get("covariates") or prep.get("covariates") or []) or "none",
            ]
        )
    if people:
        t.caption += f" Counts of patients under {ctx.below} are shown as “<{ctx.below}”."
    note = P(
        "Rows with a missing outcome or a missing covariate are excluded from that outcome's analysis "
        "(complete cases); the other outcomes keep them."
    )
    return Section("data-flow", "Data flow", [TAB(t), note])
