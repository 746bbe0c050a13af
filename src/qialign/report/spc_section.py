# ruff: noqa: E501  (report prose: long human-readable strings are kept whole for grep-ability)
"""Counterfactual SPC: one control chart per cluster with the model's course without the intervention.

From the primary fit's ``counterfactual.csv`` (qialign.results.FIT_FILES, written by
models.estimands.counterfactual): each cluster-period's observed outcome, its n and the expected
outcome without the intervention (``without_mean``, ``_lower``, ``_upper``). The chart follows the
family (qialign.spc.chart_for); centre, limits and the run-chart median come from the cluster's
periods before it starts. Signals: points beyond the limits and Anhøj's run rules around the
baseline median. A point of the intervention periods goes *beyond the counterfactual* when it lies
outside the band without the intervention widened by the chart's 3 sigma at its edges (the
limits a control chart centred on the counterfactual would have): the change is more than the
secular trend and the cluster's own variation would give.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from markupsafe import escape

from qialign import spc
from qialign.ids import sort_ids
from qialign.report.blocks import FIG, H3, NOTE, Section, plural, slug
from qialign.report.context import Context
from qialign.report.spc_figure import spc_chart
from qialign.report.tables import num
from qialign.results import FIT_FILES


@dataclass
class ClusterSPC:
    """One cluster's chart: series, limits, signals and the counterfactual band."""

    cluster: str
    chart: str
    periods: np.ndarray
    values: np.ndarray
    treated: np.ndarray
    baseline: np.ndarray  # the periods before the cluster starts
    limits: spc.Limits | None  # None: fewer baseline points than the chart needs
    median: float
    runs: spc.RunsAnalysis
    outside: np.ndarray
    without_mean: np.ndarray  # the model's expected outcome without the intervention
    cf_runs: spc.RunsAnalysis  # Anhøj's rules with the counterfactual as the centre line
    without_lower: np.ndarray
    without_upper: np.ndarray
    cf_lower: np.ndarray
    cf_upper: np.ndarray

    @property
    def beyond(self) -> np.ndarray:
        """Intervention periods outside the limits around the counterfactual."""
        on = self.treated.astype(bool)
        return on & ((self.values < self.cf_lower) | (self.values > self.cf_upper))


def cluster_spc(cf: pd.DataFrame, family: str) -> ClusterSPC:
    """The chart of one cluster's rows of ``counterfactual.csv``."""
    d = cf.sort_values("period")
    values, n = d["observed"].to_numpy(float), d["n"].to_numpy(float)
    treated = d["treated"].to_numpy(int)
    baseline = treated == 0
    if treated.any():
        baseline &= d["period"].to_numpy() < d.loc[d["treated"] == 1, "period"].min()
    chart = spc.chart_for(family)
    lim = spc.limits(chart, values, n, baseline) if baseline.sum() >= spc.MIN_BASELINE[chart] else None
    median = float(np.median(values[baseline])) if baseline.any() else float(np.median(values))
    lo, hi = d["without_lower"].to_numpy(float), d["without_upper"].to_numpy(float)
    mean = d["without_mean"].to_numpy(float)
    if lim is not None:
        cf_lo = lo - spc.SIGMAS * spc.point_sigma(chart, lo, n, lim)
        cf_hi = hi + spc.SIGMAS * spc.point_sigma(chart, hi, n, lim)
        outside = lim.outside(values)
    else:
        cf_lo, cf_hi, outside = lo, hi, np.zeros(len(values), bool)
    return ClusterSPC(
        str(d["cluster"].iloc[0]), chart, d["period"].to_numpy(), values, treated, baseline, lim, median,
        spc.runs_analysis(values, median), outside, mean, spc.runs_analysis(values, mean), lo, hi, cf_lo, cf_hi,
    )  # fmt: skip


def signals(w: ClusterSPC) -> list[str]:
    """The cluster's special-cause signals, in words."""
    out = []
    if w.outside.any():
        out.append(f"periods {', '.join(str(p) for p in w.periods[w.outside])} beyond the control limits")
    r = w.runs
    if r.long_run:
        out.append(
            f"a run of {r.longest_run} points on one side of the baseline median (more than {r.longest_run_max} signals a shift)"
        )
    if r.few_crossings:
        out.append(
            f"only {r.crossings} crossings of the baseline median (fewer than {r.crossings_min} signals a shift)"
        )
    return out


def verdict(w: ClusterSPC, better: str) -> str:
    """Whether the cluster's signals go beyond the counterfactual: intervention periods outside the
    limits around it, or a shift by Anhøj's rules with the counterfactual as the centre line."""
    found = signals(w)
    said = ("Signals: " + "; ".join(found) + ".") if found else "No special-cause signal."
    on = w.treated.astype(bool)
    if not on.any():
        return said + " The cluster never started the intervention: no counterfactual to compare."
    k, m = int(w.beyond.sum()), int(on.sum())
    good_side = (w.values < w.without_mean) if better == "lower" else (w.values > w.without_mean)
    g = int((good_side & on).sum())
    r = w.cf_runs
    points = f"{k} of its {m} intervention periods lie beyond the limits around the course expected without the intervention"
    shift = f"against that course the run rules find {'a shift' if r.signal else 'no shift'} (longest run {r.longest_run}, limit {r.longest_run_max}; {r.crossings} crossings, at least {r.crossings_min} expected), with {g} of {m} intervention periods on the better side"
    if k or r.signal:
        side = "better" if 2 * g > m else ("worse" if 2 * g < m else "neither")
        conclusion = (
            f"the change goes beyond the secular trend ({side} than expected)."
            if side != "neither"
            else "a change beyond the secular trend in no consistent direction."
        )
    else:
        conclusion = (
            "its signals are what the secular trend and its usual variation would have given anyway."
            if found
            else "no change beyond the secular trend."
        )
    return f"{said} {points}; {shift}: {conclusion}"


def _outcome_blocks(ctx: Context, outcome: str) -> list[dict]:
    model = ctx.primary(outcome)
    cf = ctx.csv(outcome, model, FIT_FILES["counterfactual"])
    blocks = [
        H3(
            f"{ctx.label(outcome)} ({spc.CHART_NAMES[spc.chart_for(ctx.family(outcome))]}, model {model})",
            f"spc-{slug(outcome)}",
        )
    ]
    if cf is None or cf.empty:
        return blocks + [
            NOTE(
                f"No counterfactual for model {escape(model)} ({FIT_FILES['counterfactual']} missing): no SPC view.",
                "bad",
            )
        ]
    per = "per patient" if ctx.people((ctx.json(outcome, "prepared.json") or {}).get("table")) else "per unit"
    count = "count" if (cf["n"] == 1).all() else f"count {per}"
    ylabel = {"p": "proportion", "u": count, "xmr": ctx.unit(outcome) or "value"}[
        spc.chart_for(ctx.family(outcome))
    ]
    for cluster in sort_ids(cf["cluster"].astype(str).unique()):
        w = cluster_spc(cf[cf["cluster"].astype(str) == cluster], ctx.family(outcome))
        uri = spc_chart(w, f"{cluster}", ylabel)
        centre = (
            f"centre {num(w.limits.centre)} from {plural(int(w.baseline.sum()), 'baseline period')}"
            if w.limits is not None
            else "too few baseline periods for limits"
        )
        blocks.append(
            FIG(
                uri,
                f"{cluster}: {ctx.label(outcome)} per period; {centre}. {verdict(w, ctx.better(outcome))}",
                f"SPC chart of {cluster}",
            )
        )
    return blocks


def spc_section(ctx: Context) -> Section:
    blocks = []
    for outcome in ctx.outcomes:
        blocks += _outcome_blocks(ctx, outcome)
    lead = (
        "Each cluster's series as QI teams read it: a p chart for proportions, a u chart for counts, an XmR chart for measurements, "
        "with the centre and 3-sigma limits from its periods before the intervention, Anhøj's run rules around the baseline median, "
        "and, shaded, the model's expected course without the intervention (the secular trend) with the limits around it. "
        "Signals within those limits are what would have happened anyway."
    )
    return Section("spc", "Control charts with the counterfactual", blocks, lead)
