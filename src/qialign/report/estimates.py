"""The one place the report selects and names rows of ``estimates.csv`` and ``crosscheck.csv``.

Rows are told apart by the ``approach`` column and the reference cross-check by the ``reference``
column that the producers write (``qialign.results``); methods are named from ``qialign.methods``.
The sections ask for rows by model and estimand through the small functions here.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from qialign.families import FAMILIES, LINK_PHRASE
from qialign.methods import METHODS, SE_KINDS
from qialign.methods import label as method_label
from qialign.report.tables import DASH, interval_label, is_missing, with_interval
from qialign.results import CONDITIONAL, IN_SAMPLE, NEW_CLUSTER, POPULATION_AVERAGED

#: what a row's (conditioning, population) says, in words (``qialign.results``)
KIND_WORDS = {
    (CONDITIONAL, NEW_CLUSTER): "conditional (cluster-specific)",
    (CONDITIONAL, IN_SAMPLE): "conditional, in-sample (the analysed cells, given their fitted effects)",
    (POPULATION_AVERAGED, NEW_CLUSTER): "population-averaged, for a new cluster",
}

__all__ = ["LINK_PHRASE", "SE_KINDS", "method_label"]


def gee_parts(method: str) -> tuple[str, str] | None:
    """(working correlation, SE correction) of a GEE method, else None (``qialign.methods``)."""
    m = METHODS.get(method)
    return (m.correlation, m.se) if m is not None and m.correlation else None


def segmented_parts(method: str) -> tuple[str, str] | None:
    """(regression, standard errors) of a segmented-regression method, else None."""
    m = METHODS.get(method)
    if m is None or not m.regression:
        return None
    return m.regression, "Newey-West" if m.se == "newey-west" else "model-based"


def bayesian_rows(allrows: pd.DataFrame | None, outcome: str, model: str) -> pd.DataFrame | None:
    """One model's Bayesian estimands from the trial-wide table, indexed by estimand."""
    if allrows is None or allrows.empty or "outcome" not in allrows:
        return None
    sel = (allrows["outcome"] == outcome) & (allrows["model"].astype(str) == model)
    return by_estimand(allrows[sel & allrows["approach"].eq("bayesian")])


def by_estimand(rows: pd.DataFrame | None) -> pd.DataFrame | None:
    if rows is None or rows.empty:
        return None
    return rows.drop_duplicates("estimand").set_index("estimand")


def frequentist_rows(allrows: pd.DataFrame | None, outcome: str) -> pd.DataFrame | None:
    """An outcome's cross-check rows from the trial-wide table (None when there are none)."""
    if allrows is None or "approach" not in allrows or "outcome" not in allrows:
        return None
    sel = (allrows["outcome"] == outcome) & allrows["approach"].eq("frequentist")
    return allrows[sel].copy() if sel.any() else None


def reference_row(cc: pd.DataFrame | None, estimand: str) -> tuple[str, pd.Series] | None:
    """(method, row) of the cross-check set against the Bayesian primary for ``estimand``: the row
    the producer marked ``reference`` (``qialign.results.mark_reference``), or None."""
    if cc is None or cc.empty or "reference" not in cc:
        return None
    rows = cc[cc["estimand"].eq(estimand) & cc["reference"].astype(bool) & cc["estimate"].notna()]
    return None if rows.empty else (str(rows.iloc[0]["method"]), rows.iloc[0])


def kind_text(r: pd.Series | None) -> str:
    """What a row estimates (conditional / population-averaged, in-sample / new cluster), or ""."""
    if r is None:
        return ""
    key = tuple("" if is_missing(r.get(k)) else str(r.get(k)) for k in ("conditioning", "population"))
    return KIND_WORDS.get(key, "")


def comparable_reference(
    cc: pd.DataFrame | None, est: pd.DataFrame | None, estimand: str
) -> tuple[str, pd.Series, pd.Series] | None:
    """(method, frequentist row, Bayesian row) of the reference cross-check for ``estimand`` and
    the Bayesian row of ``est`` it estimates (its ``comparable_to``), or None when none does."""
    ref = reference_row(cc, estimand)
    if ref is None or is_missing(ref[1].get("comparable_to")):
        return None
    bayes = row(est, str(ref[1]["comparable_to"]))
    return None if bayes is None else (ref[0], ref[1], bayes)


def comparable_pairs(
    cc: pd.DataFrame | None, est: pd.DataFrame | None
) -> list[tuple[str, pd.Series, pd.Series]]:
    """Every (method, frequentist row, Bayesian row) of the cross-checks that estimate a quantity
    the Bayesian model reports, in cross-check order; rows without one are left out."""
    if cc is None or cc.empty or "comparable_to" not in cc:
        return []
    pairs = []
    for _, r in cc[cc["estimate"].notna()].iterrows():
        bayes = None if is_missing(r["comparable_to"]) else row(est, str(r["comparable_to"]))
        if bayes is not None:
            pairs.append((str(r["method"]), r, bayes))
    return pairs


def failed_crosschecks(cc: pd.DataFrame | None) -> pd.DataFrame:
    """Cross-check methods whose treatment effect has no estimate (their ``note`` says why)."""
    if cc is None or cc.empty or "estimate" not in cc:
        return pd.DataFrame(columns=["method", "note"])
    return cc[cc["estimand"].eq("treatment_effect") & cc["estimate"].isna()]


def row(est: pd.DataFrame | None, name: str) -> pd.Series | None:
    """One estimand's row, or None."""
    if est is None or name not in est.index:
        return None
    return est.loc[name]


def link_phrase(scale, default: str | None = None) -> str:
    """How a link-scale contrast reads in prose (``log-odds`` -> log odds ratio)."""
    return LINK_PHRASE.get(scale, scale if default is None else default)


def interval_text(r: pd.Series | None, bayesian: bool = True) -> str:
    """``estimate (90% CrI lo to hi)`` at the row's ``interval``; frequentist rows read ``90% CI``."""
    if r is None:
        return DASH
    lab = interval_label(r.get("interval"), bayesian=bayesian)
    text = with_interval(r["estimate"], r.get("lower"), r.get("upper"), lab)
    no_bound = is_missing(r.get("lower")) or is_missing(r.get("upper"))
    if not is_missing(r["estimate"]) and no_bound and r.get("scale") != "probability":
        text += " (no interval)"
    return text


def natural_of_link(r: pd.Series | None, family: str) -> str:
    """exp() of a link-scale row's estimate and bounds (interval bounds transform exactly)."""
    if r is None:
        return DASH
    if not FAMILIES[family].exp_natural:
        return interval_text(r)
    e, lo, hi = (
        math.exp(float(r[k])) if not is_missing(r.get(k)) else np.nan for k in ("estimate", "lower", "upper")
    )
    return with_interval(e, lo, hi, interval_label(r.get("interval")))


def natural_name(family: str, est: pd.DataFrame | None) -> str:
    """The natural scale's name: the row's own ``scale``, else the family's."""
    nat = row(est, "treatment_effect_natural")
    if nat is not None and isinstance(nat.get("scale"), str):
        return nat["scale"]
    return FAMILIES[family].natural_scale
