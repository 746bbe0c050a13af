"""The one place the report selects and names rows of ``estimates.csv`` and ``crosscheck.csv``.

Bayesian rows carry ``method`` ``bayes`` (or ``bayes_draws`` / ``bayes_joint``); every other method
is a frequentist cross-check. The sections ask for rows by model and estimand through the small
functions here and never look at method names themselves.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from qialign.report.tables import DASH, interval_label, is_missing, with_interval
from qialign.results import REFERENCE_CROSSCHECKS
from qialign.scales import NATURAL_SCALE

#: how the link-scale effect reads in prose
LINK_PHRASE = {
    "log-odds": "log odds ratio",
    "log-rate": "log rate ratio",
    "log-mean": "log ratio of geometric means",
    "mean": "mean difference",
}
#: the cross-check quoted in the summary, first present wins
SUMMARY_CROSSCHECKS = (
    "gee_exchangeable_kc",
    "gee_nested_exchangeable_kc",
    "glm_cluster_robust",
    "mixedlm",
    "its_quasipoisson_newey_west",
    "its_ols_newey_west",
)
METHOD_LABEL = {
    "mixedlm": "Linear mixed model (Wald)",
    "glm_cluster_robust": "GLM, cluster-robust SE",
    "its_quasipoisson": "Segmented regression, quasi-Poisson (model SE)",
    "its_quasipoisson_newey_west": "Segmented regression, quasi-Poisson, Newey-West SE",
    "its_ols": "Segmented regression, OLS (model SE)",
    "its_ols_newey_west": "Segmented regression, OLS, Newey-West SE",
}
SE_LABEL = {
    "robust": "robust SE",
    "kc": "Kauermann-Carroll SE",
    "md": "Mancl-DeRouen SE",
    "fg": "Fay-Graubard SE",
}
GEE_CORRELATIONS = ("nested_exchangeable", "exchangeable")


def is_bayesian(method) -> bool:
    """A Bayesian row: method ``bayes`` or ``bayes_<propagation>``."""
    return str(method).startswith("bayes")


def gee_parts(method: str) -> tuple[str, str] | None:
    """(working correlation, SE correction) of a GEE method name, else None."""
    for corr in GEE_CORRELATIONS:
        pre = f"gee_{corr}_"
        if method.startswith(pre):
            return corr, method[len(pre) :]
    return None


SEGMENTED_FAMILY = {"its_quasipoisson": "quasi-Poisson", "its_ols": "OLS"}


def segmented_parts(method: str) -> tuple[str, str] | None:
    """(family, standard errors) of a segmented-regression method name, else None."""
    for prefix, family in SEGMENTED_FAMILY.items():
        if method == prefix:
            return family, "model-based"
        if method == f"{prefix}_newey_west":
            return family, "Newey-West"
    return None


def method_label(method: str) -> str:
    """A cross-check method as a reader names it (``gee_exchangeable_kc`` -> GEE, exchangeable, ...)."""
    if method in METHOD_LABEL:
        return METHOD_LABEL[method]
    parts = gee_parts(method)
    if parts is None:
        return method
    corr, kind = parts
    return f"GEE, {corr.replace('_', ' ')}, {SE_LABEL.get(kind, kind)}"


def bayesian_rows(allrows: pd.DataFrame | None, outcome: str, model: str) -> pd.DataFrame | None:
    """One model's Bayesian estimands from the trial-wide table, indexed by estimand."""
    if allrows is None or allrows.empty or "outcome" not in allrows:
        return None
    sel = (allrows["outcome"] == outcome) & (allrows["model"].astype(str) == model)
    if "method" in allrows:
        sel &= allrows["method"].map(is_bayesian)
    return by_estimand(allrows[sel])


def by_estimand(rows: pd.DataFrame | None) -> pd.DataFrame | None:
    if rows is None or rows.empty:
        return None
    return rows.drop_duplicates("estimand").set_index("estimand")


def frequentist_rows(allrows: pd.DataFrame | None, outcome: str) -> pd.DataFrame | None:
    """An outcome's cross-check rows from the trial-wide table (None when there are none)."""
    if allrows is None or "method" not in allrows or "outcome" not in allrows:
        return None
    sel = (allrows["outcome"] == outcome) & ~allrows["method"].map(is_bayesian)
    return allrows[sel].copy() if sel.any() else None


def _first(cc: pd.DataFrame | None, estimand: str, methods) -> tuple[str, pd.Series] | None:
    if cc is None or cc.empty:
        return None
    rows = cc[cc["estimand"].eq(estimand) & cc["estimate"].notna()].drop_duplicates("method")
    rows = rows.set_index("method")
    method = next((m for m in methods if m in rows.index), None)
    return None if method is None else (method, rows.loc[method])


def reference_row(cc: pd.DataFrame | None, estimand: str) -> tuple[str, pd.Series] | None:
    """(method, row) of the reference cross-check for ``estimand`` (``REFERENCE_CROSSCHECKS`` order)."""
    return _first(cc, estimand, REFERENCE_CROSSCHECKS)


def summary_row(cc: pd.DataFrame | None, estimand: str) -> tuple[str, pd.Series] | None:
    """(method, row) of the cross-check the summary quotes (``SUMMARY_CROSSCHECKS`` order)."""
    return _first(cc, estimand, SUMMARY_CROSSCHECKS)


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
    return LINK_PHRASE.get(scale, scale if default is None else default)


def interval_text(r: pd.Series | None, bayesian: bool = True) -> str:
    """``estimate (95% CrI lo to hi)``; frequentist rows read ``95% CI``."""
    if r is None:
        return DASH
    lab = interval_label(r.get("interval"), bayesian=True) if bayesian else "95% CI"
    text = with_interval(r["estimate"], r.get("lower"), r.get("upper"), lab)
    no_bound = is_missing(r.get("lower")) or is_missing(r.get("upper"))
    if not is_missing(r["estimate"]) and no_bound and r.get("scale") != "probability":
        text += " (no interval)"
    return text


def natural_of_link(r: pd.Series | None, family: str) -> str:
    """exp() of a link-scale row's estimate and bounds (interval bounds transform exactly)."""
    if r is None:
        return DASH
    if family == "gaussian":
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
    return NATURAL_SCALE[family]
