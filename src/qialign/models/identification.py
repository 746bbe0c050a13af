"""Is each treatment term identified? A rank check of the fixed-effect design before any fit.

The columns are built per observed cluster-period and added term by term, in this order:
intercept; secular trend f(t); seasonality; alignment main effect; treatment X h(e) (``eti``: one
column per exposure time); slope change; alignment x treatment. A term whose k columns raise the
rank of the design by less than k lies (partly) in the span of the terms before it: the data say
nothing about it, so its posterior would be its prior. Random effects are left out: they are
shrunk, not free, and do not decide identification of the fixed terms.

A random-walk trend (``rw1``) is checked as categorical period effects: it can follow any
period-to-period pattern, so with no concurrent controls it absorbs a level change exactly as
period effects do (its prior alone would then separate the two). Alignment is checked with
generic cluster values (any values that vary over clusters give the same rank).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from qialign.config import models_for
from qialign.errors import Problem
from qialign.models.design import season_basis, trend_basis
from qialign.models.spec import ModelSpec

#: estimand names of the terms, in the order they enter the rank check
TERMS = ("intercept", "trend", "season", "alignment_main", "treatment_effect", "slope_change",
         "alignment_interaction")  # fmt: skip


def _schedule(cells: pd.DataFrame) -> pd.DataFrame:
    """One row per observed cluster-period with its treatment status and exposure time."""
    keys = ["cluster", "period", "treated", "exposure_time"]
    out = cells[keys].drop_duplicates(["cluster", "period"]).astype({"cluster": str})
    return out.astype({"period": int, "treated": int, "exposure_time": int}).reset_index(drop=True)


def _term_columns(cp: pd.DataFrame, spec: ModelSpec, moderated: bool) -> dict[str, np.ndarray]:
    """Design columns per term (cluster-periods x k); absent terms are left out."""
    periods = np.sort(cp["period"].unique())
    pidx = np.searchsorted(periods, cp["period"].to_numpy())
    treated = cp["treated"].to_numpy(float)
    e = cp["exposure_time"].to_numpy() * cp["treated"].to_numpy()
    cols = {"intercept": np.ones((len(cp), 1))}
    if len(periods) > 1:
        if spec.trend in ("period", "rw1"):
            cols["trend"] = np.eye(len(periods))[pidx][:, 1:]
        else:
            cols["trend"] = trend_basis(spec, periods)[0][pidx]
    if spec.harmonics:
        cols["season"] = season_basis(spec, periods)[pidx]
    if spec.exposure == "eti":
        levels = np.unique(e[treated == 1])
        cols["treatment_effect"] = (e[:, None] == levels[None, :]).astype(float)
    elif spec.exposure == "ramp":
        cols["treatment_effect"] = (np.minimum(e / spec.ramp_periods, 1.0) * treated)[:, None]
    else:
        cols["treatment_effect"] = treated[:, None]
    if spec.slope_change:
        cols["slope_change"] = (np.maximum(e - 1, 0) * treated)[:, None]
    if moderated:
        clusters = sorted(cp["cluster"].unique())
        generic = np.random.default_rng(0).normal(size=len(clusters))
        a = generic[pd.Categorical(cp["cluster"], categories=clusters).codes]
        if spec.moderator_main_effects:
            cols["alignment_main"] = a[:, None]
        cols["alignment_interaction"] = (a * cols["treatment_effect"].sum(axis=1))[:, None]
    return cols


def unidentified_terms(cells: pd.DataFrame, spec: ModelSpec, moderated: bool = False) -> list[str]:
    """Terms of ``spec`` whose columns are not all estimable given the terms before them."""
    cp = _schedule(cells)
    cols = _term_columns(cp, spec, moderated)
    design = np.zeros((len(cp), 0))
    rank, bad = 0, []
    for term in TERMS:
        if term not in cols:
            continue
        design = np.column_stack([design, cols[term]])
        new = np.linalg.matrix_rank(design)
        if new < rank + cols[term].shape[1]:
            bad.append(term)
        rank = new
    return bad


def identification_message(term: str, spec: ModelSpec, design: str) -> str:
    """What is wrong with one unidentified term, and what to use instead."""
    head = f"model '{spec.id}' for outcome '{spec.outcome}': {term} is not identified"
    free_trend = spec.trend in ("period", "rw1")
    if term == "treatment_effect" and free_trend and design == "interrupted_time_series":
        return (
            f"{head}: with trend: {spec.trend} (a free effect for every period) and no concurrent "
            "controls the treatment indicator is a sum of period effects, so its estimate would "
            "come from the prior. Use trend: linear or trend: spline for an interrupted time series "
            "(optionally slope_change: true)"
        )
    if term in ("alignment_main", "alignment_interaction"):
        return (
            f"{head}: alignment cannot be separated from the intercept and treatment terms (it needs "
            "clusters that differ in alignment, with and without the intervention). Remove "
            "alignment from this model's moderators"
        )
    return (
        f"{head}: given the cluster-period schedule its columns are a linear combination of the "
        f"terms before it (trend: {spec.trend}, exposure: {spec.exposure}), so its estimate would "
        "come from the prior. Choose a trend or exposure that the schedule separates (e.g. trend: "
        "linear, exposure: step)"
    )


def identification_problems(
    cfg: dict, rows: dict[str, pd.DataFrame], locations: dict[str, str]
) -> list[Problem]:
    """Every unidentified term of every model x outcome; ``rows`` maps outcome -> analysis rows
    (cluster, period, treated, exposure_time), ``locations`` outcome -> table."""
    problems = []
    moderated = cfg["alignment"]["source"] != "none"
    for outcome, table in rows.items():
        if table.empty:
            continue
        for model in models_for(cfg, outcome):
            spec = ModelSpec.from_config(
                model, outcome, cfg["outcomes"][outcome], cfg, table=locations.get(outcome)
            )
            uses_alignment = moderated and "alignment" in spec.moderators
            for term in unidentified_terms(table, spec, uses_alignment):
                where = f"trial config '{cfg['id']}', models/{spec.id}"
                key = "moderators" if term.startswith("alignment") else "trend"
                problems.append(Problem(where, key, identification_message(term, spec, cfg["design"])))
    return problems
