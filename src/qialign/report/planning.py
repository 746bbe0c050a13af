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
    blocks = [
        P(
            f"Power of this trial's own schedule of clusters, periods and patients per cluster-period (outcome "
            f"<strong>{escape(ctx.label(outcome))}</strong>, {scale}), and of the schedule repeated, by "
            "generalised least squares on cluster-period means with categorical period effects (Hussey & Hughes "
            "2007; block-exchangeable correlation with within-period ICC and cluster autocorrelation CAC, "
            f"Hooper et al. 2016). Two-sided level {alpha:g}; MDE is the smallest effect detected with "
            f"power {target:g}. The interaction is per SD of alignment, alignment balanced within sequences. "
            "The GLS engine reproduces the SteppedPower vignette's published values (tests)."
        )
    ]
    t = Table(
        ["Design", "Clusters", "ICC", "CAC", "Estimand", "SE", "MDE", "Effect", "Power"],
        [],
        numeric={1, 2, 3, 5, 6, 7, 8},
    )
    for r in table.to_dict("records"):
        t.rows.append(
            [
                str(r["design"]),
                str(int(r["clusters"])),
                num(r["icc"], 3),
                num(r["cac"], 2),
                str(r["estimand"]),
                num(r["se"], 4),
                num(r["mde"], 4),
                DASH if is_missing(r["effect"]) else num(r["effect"], 4),
                DASH if is_missing(r["power"]) else num(r["power"], 3),
            ]
        )
    tr = table[table["estimand"] == "treatment"].drop_duplicates(["design", "icc", "cac"])
    grid = np.linspace(0, 1.5 * tr["mde"].max(), 60)
    curves = pd.DataFrame(
        [
            {
                "design": r["design"],
                "icc": r["icc"],
                "cac": r["cac"],
                "effect": e,
                "power": power(e, r["se"], alpha),
            }
            for r in tr.to_dict("records")
            for e in grid
        ]
    )
    blocks.append(
        FIG(
            figures.power_curves(curves, f"treatment effect ({scale})"),
            "Power of the treatment effect against its size, per design (the trial's schedule and "
            "its repeats); colour: ICC, solid: CAC 1, dashed: CAC below 1; dotted: 0.8.",
            "Power curves",
        )
    )
    blocks.append(TAB(t))
    return Section("planning", title, blocks)
