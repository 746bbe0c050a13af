"""Analytic power and sample size for cluster randomised designs (GLS on cluster-period means).

Public API: :func:`power_table` (the table ``qialign power`` writes), :func:`sample_size`,
:func:`design_matrix`; the GLS core in :mod:`.gls` (:func:`treatment_variance`,
:func:`interaction_variance`, :class:`VarianceComponents`, design builders, :func:`power`) and
the published closed forms in :mod:`.closed_forms`.

Tables use the correlation parametrisation of Hooper et al. (2016): ``icc`` (within-period
ICC), ``cac`` (cluster autocorrelation; 1 = Hussey & Hughes), ``iac`` (individual
autocorrelation; 0 = cross-sectional, > 0 closed cohort), ``decay`` (lag-1 correlation of the
cluster effect, Kasza et al. 2019 exponential decay; 1 = none), ``total_variance`` (or
``prevalence`` p for a binary outcome: p(1 - p)), ``m`` subjects per cluster-period. Power is the
two-sided Wald test of :func:`.gls.power` (normal, or central t with ``df``).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import pandas as pd

from .closed_forms import (
    hooper_stepped_wedge_variance,
    hussey_hughes_variance,
    kasza_variance,
    li_decay_variance,
)
from .gls import (
    VarianceComponents,
    binary_variance,
    cluster_covariance,
    incomplete_window,
    interaction_variance,
    normal_scores,
    parallel,
    parallel_baseline,
    power,
    stepped_wedge,
    treatment_variance,
)
from .search import smallest_reaching

__all__ = [
    "COLUMNS",
    "DESIGNS",
    "VarianceComponents",
    "binary_variance",
    "cluster_covariance",
    "design_matrix",
    "hooper_stepped_wedge_variance",
    "hussey_hughes_variance",
    "incomplete_window",
    "interaction_variance",
    "kasza_variance",
    "li_decay_variance",
    "normal_scores",
    "parallel",
    "parallel_baseline",
    "power",
    "power_table",
    "sample_size",
    "smallest_reaching",
    "stepped_wedge",
    "treatment_variance",
]

DESIGNS = ("stepped_wedge", "parallel", "parallel_baseline")
COLUMNS = [
    "design",
    "clusters",
    "periods",
    "m",
    "icc",
    "cac",
    "iac",
    "decay",
    "total_variance",
    "estimand",
    "effect",
    "se",
    "power",
    "method",
]


def design_matrix(design: str, clusters: int, periods: int) -> np.ndarray:
    """Treatment matrix of a named design with ``clusters`` clusters and ``periods`` periods.

    ``stepped_wedge``: one baseline period and ``periods - 1`` sequences, clusters spread as
    evenly as possible (earlier sequences get the extra clusters). ``parallel``: control arm
    ``clusters // 2``, treated arm the rest, every period treated as randomised.
    ``parallel_baseline``: one all-control baseline period, then ``periods - 1`` parallel periods.
    """
    if design == "stepped_wedge":
        if periods < 2:
            raise ValueError("a stepped wedge needs at least 2 periods")
        counts = [len(a) for a in np.array_split(np.arange(clusters), periods - 1)]
        return stepped_wedge(counts)
    arms = (clusters // 2, clusters - clusters // 2)
    if design == "parallel":
        return parallel(arms, periods)
    if design == "parallel_baseline":
        if periods < 2:
            raise ValueError("parallel_baseline needs at least 2 periods")
        return parallel_baseline(arms, 1, periods - 1)
    raise ValueError(f"unknown design {design!r}; expected one of {DESIGNS}")


def _listify(value) -> list:
    if value is None or isinstance(value, str) or np.ndim(value) == 0:
        return [value]
    return list(value)


def _components(icc, cac, iac, decay, total_variance) -> VarianceComponents:
    return VarianceComponents.from_correlations(
        icc, cac=cac, iac=iac, total_variance=total_variance, cluster_decay=decay
    )


def power_table(
    design: str | Sequence[str] = "stepped_wedge",
    clusters: int | Sequence[int] = 12,
    periods: int | Sequence[int] = 5,
    m: float | Sequence[float] = 20,
    icc: float | Sequence[float] = 0.05,
    cac: float | Sequence[float] = 1.0,
    iac: float | Sequence[float] = 0.0,
    decay: float | Sequence[float] = 1.0,
    effect: float | Sequence[float] = 0.2,
    interaction_effect: float | Sequence[float] | None = None,
    total_variance: float = 1.0,
    prevalence: float | None = None,
    alpha: float = 0.05,
    df: float | None = None,
) -> pd.DataFrame:
    """Power over the grid (Cartesian product) of every list-valued argument.

    One row per grid point and effect with ``estimand="treatment"``; with ``interaction_effect``
    (per SD of a standardised cluster-level moderator, x balanced within sequences, see
    :func:`.gls.interaction_variance`) also rows with ``estimand="interaction"``. ``prevalence``
    p sets ``total_variance = p (1 - p)`` (effects then on the risk-difference scale).
    ``method``: ``gls_normal`` or ``gls_t`` (central t with ``df``). Columns: :data:`COLUMNS`.
    """
    if prevalence is not None:
        total_variance = binary_variance(prevalence)
    method = "gls_normal" if df is None else "gls_t"
    rows = []
    grid = itertools.product(*map(_listify, (design, clusters, periods, m, icc, cac, iac, decay)))
    for dsn, n_cl, n_per, m_, icc_, cac_, iac_, decay_ in grid:
        x = design_matrix(dsn, int(n_cl), int(n_per))
        vc = _components(icc_, cac_, iac_, decay_, total_variance)
        common = dict(
            design=dsn, clusters=int(n_cl), periods=int(n_per), m=m_, icc=icc_, cac=cac_,
            iac=iac_, decay=decay_, total_variance=total_variance, method=method,
        )  # fmt: skip
        estimands = [("treatment", _listify(effect), treatment_variance)]
        if interaction_effect is not None:
            estimands.append(("interaction", _listify(interaction_effect), interaction_variance))
        for estimand, effects, variance in estimands:
            se = float(np.sqrt(variance(x, m_, vc)))
            for eff in effects:
                rows.append(
                    common | dict(estimand=estimand, effect=eff, se=se, power=power(eff, se, alpha, df))
                )
    return pd.DataFrame(rows, columns=COLUMNS)


def sample_size(
    design: str = "stepped_wedge",
    *,
    effect: float,
    target_power: float = 0.8,
    solve_for: str = "clusters",
    clusters: int | None = None,
    periods: int = 5,
    m: float = 20,
    icc: float = 0.05,
    cac: float = 1.0,
    iac: float = 0.0,
    decay: float = 1.0,
    estimand: str = "treatment",
    total_variance: float = 1.0,
    prevalence: float | None = None,
    alpha: float = 0.05,
    df: float | None = None,
    cluster_step: int | None = None,
    max_value: int = 100_000,
) -> pd.DataFrame:
    """Smallest number of clusters (``solve_for="clusters"``) or integer m (``"m"``) reaching
    ``target_power``; a one-row :func:`power_table` frame plus ``target_power`` and ``solved_for``.

    Clusters are searched in multiples of ``cluster_step`` (default: the number of sequences,
    ``periods - 1``, for a stepped wedge and 2 for parallel designs, so allocation stays
    balanced); power increases with either, so :func:`.search.smallest_reaching` finds the minimum.
    Raises ValueError when ``max_value`` does not reach the target.
    """
    if solve_for not in ("clusters", "m"):
        raise ValueError(f"solve_for must be 'clusters' or 'm', got {solve_for!r}")
    if estimand not in ("treatment", "interaction"):
        raise ValueError(f"estimand must be 'treatment' or 'interaction', got {estimand!r}")
    if prevalence is not None:
        total_variance = binary_variance(prevalence)
    vc = _components(icc, cac, iac, decay, total_variance)
    variance = treatment_variance if estimand == "treatment" else interaction_variance
    if solve_for == "clusters":
        step = cluster_step or (periods - 1 if design == "stepped_wedge" else 2)
    else:
        step = 1
        if clusters is None:
            raise ValueError("solve_for='m' needs clusters")

    def achieved(k: int) -> float:
        n_cl, m_ = (k * step, m) if solve_for == "clusters" else (clusters, k)
        se = np.sqrt(variance(design_matrix(design, int(n_cl), periods), m_, vc))
        return power(effect, se, alpha, df)

    try:
        found = smallest_reaching(achieved, target_power, limit=max(1, max_value // step)) * step
    except ValueError:
        raise ValueError(f"{solve_for} up to {max_value} does not reach power {target_power}") from None
    n_cl, m_ = (found, m) if solve_for == "clusters" else (clusters, found)
    kwargs = dict(icc=icc, cac=cac, iac=iac, decay=decay, total_variance=total_variance)
    effects = {"effect": effect} if estimand == "treatment" else {"interaction_effect": effect}
    table = power_table(design, n_cl, periods, m_, alpha=alpha, df=df, **kwargs, **effects)
    table = table[table["estimand"] == estimand].reset_index(drop=True)
    return table.assign(target_power=target_power, solved_for=solve_for)
