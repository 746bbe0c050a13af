# ruff: noqa: E501  (report prose: long human-readable strings are kept whole for grep-ability)
"""Power and planning: the analytic power of the trial's own schedule (``power.csv``)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from markupsafe import escape

from qialign.families import FAMILIES
from qialign.power import power
from qialign.report import figures
from qialign.report.blocks import FIG, NOTE, TAB, P, Section
from qialign.report.context import Context
from qialign.report.tables import DASH, Table, is_missing, num


def _intro(ctx: Context, table: pd.DataFrame, outcome: str, scale: str) -> P:
    alpha, target = float(table["alpha"].iloc[0]), float(table["target"].iloc[0])
    grid = table[table["search"] == "grid"]
    dfs = ", ".join(f"{d:g}" for d in sorted(grid["df"].unique()))
    icc_scale = str(table["icc_scale"].iloc[0])
    latent = (
        " For a binary outcome this is the proportion scale, not the latent logit scale of the model's ICC: a proportion-scale ICC is smaller than the latent-scale ICC of the same clustering."
        if icc_scale == "proportion"
        else ""
    )
    moderators = set(table["moderator"].dropna())
    alignment = (
        "the trial's own alignment scores, standardised over clusters as the model does"
        if "trial alignment" in moderators
        else "alignment assumed balanced within each sequence (no alignment scores)"
    )
    return P(
        f"Power of this trial's own schedule of clusters, periods and patients per cluster-period (outcome "
        f"<strong>{escape(ctx.label(outcome))}</strong>, {scale}), and of the schedule repeated, by "
        "generalised least squares on cluster-period means with categorical period effects (Hussey & Hughes "
        "2007; block-exchangeable correlation with within-period ICC and cluster autocorrelation CAC, "
        "Hooper et al. 2016; closed-cohort IAC and exponential decay of the cluster effect where configured). "
        f"Two-sided level {alpha:g} against a t reference on {dfs} degrees of freedom (df column); MDE is the "
        f"smallest effect detected with power {target:g}. The ICCs are on the {escape(icc_scale)} scale.{latent} "
        f"The interaction is per SD of alignment, from {alignment}. "
        "The GLS engine reproduces the SteppedPower vignette's published values (tests)."
    )


def _grid_table(grid: pd.DataFrame) -> Table:
    t = Table(
        [
            "Design",
            "Clusters",
            "ICC",
            "CAC",
            "IAC",
            "Decay",
            "Estimand",
            "SE",
            "df",
            "MDE",
            "Effect",
            "Power",
        ],
        [],
        numeric={1, 2, 3, 4, 5, 7, 8, 9, 10, 11},
    )
    for r in grid.to_dict("records"):
        t.rows.append(
            [
                str(r["design"]), str(int(r["clusters"])), num(r["icc"], 3), num(r["cac"], 2),
                num(r["iac"], 2), num(r["decay"], 2), str(r["estimand"]), num(r["se"], 4),
                num(r["df"], 0), num(r["mde"], 4),
                DASH if is_missing(r["effect"]) else num(r["effect"], 4),
                DASH if is_missing(r["power"]) else num(r["power"], 3),
            ]
        )  # fmt: skip
    return t


def _search_blocks(table: pd.DataFrame, target: float) -> list:
    """The smallest clusters (trial's sequences in turn) and cluster size reaching the target."""
    found = table[table["search"] != "grid"]
    if found.empty:
        return [NOTE("No effects configured (power.effects): no sample-size search.")]
    t = Table(
        [
            "Search",
            "ICC",
            "CAC",
            "IAC",
            "Decay",
            "Estimand",
            "Effect",
            "Clusters",
            "Patients per cluster-period",
            "Power",
        ],
        [],
        numeric={1, 2, 3, 4, 6, 7, 8, 9},
    )
    for r in found.to_dict("records"):
        unreached = "not reached" if is_missing(r["power"]) else None
        t.rows.append(
            [
                "fewest clusters" if r["search"] == "clusters" else "fewest patients",
                num(r["icc"], 3), num(r["cac"], 2), num(r["iac"], 2), num(r["decay"], 2),
                str(r["estimand"]), num(r["effect"], 4),
                unreached or str(int(r["clusters"])), unreached or num(r["m"], 1),
                unreached or num(r["power"], 3),
            ]
        )  # fmt: skip
    return [
        P(
            f"Sample size for power {target:g}: the fewest clusters (taken from the trial's clusters in turn, "
            "each with its sequence and patients per cluster-period) and, with the trial's clusters, the fewest "
            "patients in every cluster-period (<code>qialign power --solve clusters|cluster_size</code>)."
        ),
        TAB(t),
    ]


def planning(ctx: Context) -> Section:
    """Analytic power of the trial's own schedule (power.csv), for planning the next trial."""

    table = ctx.csv("power.csv")
    title = "Power and planning"
    if table is None or table.empty:
        return Section(
            "planning", title, [NOTE("No analytic power table (no binary or continuous outcome).")]
        )
    outcome = str(table["outcome"].iloc[0])
    scale = "risk difference" if FAMILIES[ctx.family(outcome)].kind == "binary" else "mean difference"
    alpha, target = float(table["alpha"].iloc[0]), float(table["target"].iloc[0])
    grid = table[table["search"] == "grid"]
    # curves for the first IAC and decay (the figure distinguishes ICC and CAC only)
    tr = grid[(grid["estimand"] == "treatment") & (grid["iac"] == grid["iac"].iloc[0])]
    tr = tr[tr["decay"] == tr["decay"].iloc[0]].drop_duplicates(["design", "icc", "cac"])
    effects = np.linspace(0, 1.5 * tr["mde"].max(), 60)
    curves = pd.DataFrame(
        [
            {"design": r["design"], "icc": r["icc"], "cac": r["cac"], "effect": e,
             "power": power(e, r["se"], alpha, r["df"])}
            for r in tr.to_dict("records")
            for e in effects
        ]
    )  # fmt: skip
    blocks = [
        _intro(ctx, table, outcome, scale),
        FIG(
            figures.power_curves(curves, f"treatment effect ({scale})"),
            "Power of the treatment effect against its size, per design (the trial's schedule and "
            "its repeats); colour: ICC, solid: CAC 1, dashed: CAC below 1; dotted: 0.8.",
            "Power curves",
        ),
        TAB(_grid_table(grid)),
        *_search_blocks(table, target),
    ]
    return Section("planning", title, blocks)
