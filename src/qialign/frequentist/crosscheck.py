"""``cross_check``: frequentist estimates of the treatment effect (and its moderation).

Methods (the ``method`` column): ``mixedlm`` (gaussian/lognormal only, t on clusters - p df as the
GEE, :mod:`.mixed` says why not Satterthwaite; REML on cell means with the residual variance from
the within-cell SDs for cells, :func:`.fit_mixedlm_cells`);
``gee_exchangeable_{robust,kc,md,fg}`` and ``gee_nested_exchangeable_{robust,kc,md,fg}``
(numpy GEE, :mod:`.gee`; t on clusters - p df, Li, Turner & Preisser 2018);
``glm_cluster_robust`` (t on clusters - 1 df). ``mixedlm`` is omitted (not NaN) for
non-gaussian families.

The data's level (``level``: ``row`` for patients, ``cell`` for cluster_periods) is where the
outcome was recorded. Binomial and gaussian/lognormal cells are means of n individuals and the
GEE's working correlation stays on individuals, so cells and the same patients' rows give the
same estimates and SEs (GLM: the same estimates, scores and CR1 SEs; MixedLM: the same REML fit).
Count cells are one observation each: GLM (independence) equals the rows exactly, the correlated
GEEs do not (their correlation is between cells, and alpha0 has no pairs).

Rows per method: ``treatment_effect`` (link scale), ``treatment_effect_natural`` (exp of
estimate and interval for log/logit links; se is NaN there) and, per moderator m,
``<m>_interaction`` (``alignment_interaction`` for ``alignment_z``) on the link scale.
Numerical failures give NaN rows with a ``note``. For an ``exposure: eti`` model the GEEs add
``tate`` / ``pte`` rows from exposure-time indicators (:mod:`.eti`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from qialign import methods as registry
from qialign.families import FAMILIES
from qialign.results import DEFAULT_INTERVAL_PROB

from .design import build_design, gee_df
from .eti import eti_rows
from .gee import fit_gee
from .glm import fit_glm_cluster_robust
from .mixed import fit_mixedlm, fit_mixedlm_cells

__all__ = ["cross_check", "METHODS", "COLUMNS"]

#: the methods of a design with concurrent controls, in registry order
METHODS = tuple(m.id for m in registry.METHODS.values() if m.design == "concurrent")
COLUMNS = ["method", "estimand", "scale", "estimate", "se", "lower", "upper", "df", "note"]


def _estimand_name(term: str) -> str:
    if term == "treated":
        return "treatment_effect"
    m = term.split(":", 1)[1]
    return "alignment_interaction" if m == "alignment_z" else f"{m}_interaction"


def _rows(method, family, terms, est, se, df, note, interval):
    """Link-scale rows for ``terms`` plus the natural-scale treatment row."""
    fam = FAMILIES[family]
    link_scale, natural_scale = fam.link_scale, fam.natural_scale
    q = stats.norm.ppf(0.5 + interval / 2) if not np.isfinite(df) else None
    if q is None:
        q = stats.t.ppf(0.5 + interval / 2, df) if df > 0 else np.nan
    out = []
    for term in terms:
        b, s = float(est.get(term, np.nan)), float(se.get(term, np.nan))
        lo, hi = b - q * s, b + q * s
        name = _estimand_name(term)
        out.append([method, name, link_scale, b, s, lo, hi, df, note])
        if term == "treated":
            nat_b, nat_lo, nat_hi = fam.natural([b, lo, hi])
            nat_se = np.nan if fam.exp_natural else s  # an exp()'d estimate has no symmetric SE
            out.append([method, f"{name}_natural", natural_scale, nat_b, nat_se, nat_lo, nat_hi, df, note])
    return out


def cross_check(
    data: pd.DataFrame,
    family: str,
    *,
    trend: str = "period",
    covariates=(),
    moderators=(),
    level: str = "row",
    interval: float = DEFAULT_INTERVAL_PROB,
    methods=METHODS,
    tol: float = 1e-6,
    exposure: dict | None = None,
) -> pd.DataFrame:
    """Frequentist cross-check table (columns ``COLUMNS``) for one outcome; see module doc.

    ``data`` is the prepared analysis table (``cluster, period, treated`` and the outcome
    columns described in :mod:`.design`). ``exposure`` = ``{"window": (a, b), "pte_at": k}`` adds
    the ETI rows of :mod:`.eti` (tate, pte). Raises ValueError for a wrong family, trend, level,
    interval, method or missing column; never for numerical failure.
    """
    if not 0 < interval < 1:
        raise ValueError(f"interval must be in (0, 1), got {interval!r}")
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; choose from {METHODS}")
    des = build_design(data, family, trend=trend, covariates=covariates, moderators=moderators, level=level)
    terms = ["treated", *(f"treated:{m}" for m in moderators)]
    base_note = f"{des.n_dropped} rows with missing values dropped" if des.n_dropped else ""

    def note(*parts):
        return "; ".join(x for x in (base_note, *parts) if x)

    rows = []
    if "mixedlm" in methods and des.working_family == "gaussian":
        if des.mult is None:
            mr = fit_mixedlm(des.y, des.X, des.cluster, des.period)
        else:
            mr = fit_mixedlm_cells(des.y, des.X, des.cluster, des.period, des.mult, des.ss)
        n_clusters = len(np.unique(des.cluster))
        df, why = gee_df(n_clusters - des.X.shape[1], n_clusters)
        rows += _rows("mixedlm", family, terms, mr.params, mr.bse, df, note(mr.note, why), interval)
    for corstr in registry.CORSTRS:
        wanted = [k for k in registry.SE_KINDS if registry.gee_method(corstr, k) in methods]
        if not wanted:
            continue
        g = fit_gee(
            des.y,
            des.X,
            des.cluster,
            family=des.working_family,
            corstr=corstr,
            period=des.period,
            offset=des.offset,
            mult=des.mult,
            ss=des.ss,
            tol=tol,
        )
        df, why = gee_df(g.df, len(np.unique(des.cluster)))
        for k in wanted:
            method = registry.gee_method(corstr, k)
            rows += _rows(method, family, terms, g.params, g.se(k), df, note(g.note, why), interval)
    if "glm_cluster_robust" in methods:
        r = fit_glm_cluster_robust(
            des.y,
            des.X,
            des.cluster,
            family=des.working_family,
            offset=des.offset,
            weights=des.weights,
            nobs=des.nobs,
        )
        rows += _rows("glm_cluster_robust", family, terms, r.params, r.bse, r.df, note(r.note), interval)
    if exposure is not None:  # an eti model: tate and pte from exposure-time indicators
        common = dict(trend=trend, covariates=covariates, moderators=moderators, level=level)
        rows += eti_rows(data, family, **exposure, **common, interval=interval, methods=methods, tol=tol)
    out = pd.DataFrame(rows, columns=COLUMNS)
    out["df"] = out["df"].astype(float)
    return out
