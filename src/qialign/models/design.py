"""Design matrices and data arrays for one model, from cluster-period cells.

Cells: one row per cluster x period x covariate pattern with ``cluster, site, period, treated,
exposure_time``, optional ``fidelity``, covariates, ``n`` and the family's sufficient statistics
(binomial ``events``; gaussian/lognormal ``sum``, ``sumsq`` of y or log y; counts ``count``,
``exposure``). A row-level table is the same with n = 1.

Transformations (all reversible, recorded in the Design so estimates are reported on raw scales):

- gaussian/lognormal: y* = (y - c) / s with c, s the patient-level mean and SD from cell sums;
  the cell statistics become sum* = (sum - n c)/s and sumsq* = (sumsq - 2 c sum + n c^2)/s^2.
- covariates: numeric columns z = (x - mean)/sd with patient-weighted (n) mean and SD; other
  columns become 0/1 indicators (first level reference), standardised the same way; a coefficient
  per raw unit is beta / sd.
- alignment A_j: standardised over the analysed clusters, unweighted mean 0, SD 1 (ddof = 1).
- fidelity F_jt: standardised over the treated cluster-periods (unweighted, ddof = 1), 0 in control.
- trend: categorical period effects are sum-to-zero (ZeroSumNormal), linear/spline bases are
  centred over periods; the reported trend is f(t) - f(first period).
- exposure h(e): step 1; ramp min(e / L, 1); eti one effect per exposure time e = 1..E.
- slope change (segmented regression): e - 1 in treated cells (0 in the first treated period).
- seasonality: sin(2 pi k t / L), cos(2 pi k t / L), k = 1..K, per period t.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
from scipy.interpolate import BSpline
from scipy.special import logit

from qialign.errors import QialignError
from qialign.families import FAMILIES
from qialign.ids import ids_key, sort_ids
from qialign.models.spec import ModelSpec

REQUIRED = ("cluster", "period", "treated", "exposure_time", "n")


#: the per-cell arrays of the linear predictor other than the covariates Z (None when a term is off)
PREDICTOR_ARRAYS = (
    "cluster_idx",
    "site_idx",
    "period_idx",
    "cp_idx",
    "treated",
    "h",
    "eti_idx",
    "slope",
    "F",
)


@dataclass
class Design:
    """Arrays the PyMC graph is built from (one entry per cell unless named otherwise)."""

    cells: pd.DataFrame
    family: str
    n: np.ndarray
    clusters: list[str]
    cluster_idx: np.ndarray
    sites: list[str]
    site_idx: np.ndarray
    cluster_site: np.ndarray  # site index of each cluster
    periods: np.ndarray  # sorted unique period values
    period_idx: np.ndarray
    cp_keys: pd.DataFrame  # unique observed cluster-periods (cluster, period, cp)
    cp_idx: np.ndarray
    treated: np.ndarray
    h: np.ndarray  # exposure weight, 0 in control
    eti_levels: np.ndarray  # exposure times present (eti)
    eti_idx: np.ndarray  # index into eti_levels (0 in control)
    trend_P: np.ndarray | None  # linear/spline basis per period (periods x k)
    trend_names: list[str]
    Z: np.ndarray  # standardised covariates (cells x p)
    cov_names: list[str]
    cov_center: np.ndarray
    cov_scale: np.ndarray
    A: np.ndarray | None  # standardised alignment per cluster
    align_raw: pd.Series | None
    align_center: float = np.nan
    align_scale: float = np.nan
    slope: np.ndarray | None = None  # periods since the start (e - 1) in treated cells, else 0
    season: np.ndarray | None = None  # Fourier basis per period (periods x 2K)
    F: np.ndarray | None = None  # standardised fidelity per cell
    fid_center: float = np.nan
    fid_scale: float = np.nan
    y: dict = field(default_factory=dict)  # family data (events | sum,sumsq | count,exposure)
    y_center: float = 0.0
    y_scale: float = 1.0
    mu0: float = 0.0  # empirical link-scale mean; the intercept prior is centred here

    cell_dim: str = "cell"  # the dimension of the per-cell arrays ("stratum" in ``at_strata``)

    @property
    def n_cells(self) -> int:
        return len(self.n)

    def at_strata(self, first: np.ndarray) -> Design:
        """The design's non-covariate part at one cell of each stratum (``covariate_strata``): the
        arrays the linear predictor without Z beta is built from, on the ``stratum`` dimension."""
        picked = {name: getattr(self, name) for name in (*PREDICTOR_ARRAYS, "n")}
        return replace(
            self,
            cells=self.cells.iloc[first].reset_index(drop=True),
            **{name: None if a is None else a[first] for name, a in picked.items()},
            Z=np.zeros((len(first), 0)),
            y={},
            cell_dim="stratum",
        )


def covariate_strata(d: Design) -> tuple[np.ndarray, np.ndarray] | None:
    """(a cell of each stratum, each cell's stratum), or None when every cell is its own stratum.

    A stratum is the cells that share every term of the linear predictor but Z beta (cluster,
    period, site, exposure, slope, fidelity): patient rows with a continuous covariate, say, are
    one cell each but ~100 strata of a 12 x 10 trial. The model computes the rest of the predictor
    per stratum and gathers it to the cells once, eta_c = eta_s(c) + Z_c beta: the same likelihood,
    with one scatter-add of the gradient instead of one per term."""
    key = np.column_stack([a for a in (getattr(d, name) for name in PREDICTOR_ARRAYS) if a is not None])
    _, first, index = np.unique(key, axis=0, return_index=True, return_inverse=True)
    if len(first) == d.n_cells:
        return None
    return first, index.ravel()


def _standardise_y(cells: pd.DataFrame) -> tuple[dict, float, float]:
    n, s, ss = (cells[c].to_numpy(float) for c in ("n", "sum", "sumsq"))
    N = n.sum()
    c = s.sum() / N
    var = (ss.sum() - N * c**2) / max(N - 1.0, 1.0)
    sd = float(np.sqrt(var)) if var > 0 else 1.0
    y = {"sum": (s - n * c) / sd, "sumsq": (ss - 2 * c * s + n * c**2) / sd**2}
    return y, float(c), sd


def trend_basis(spec: ModelSpec, periods: np.ndarray):
    """Per-period basis (periods x k), centred over periods, or None (period / rw1 trends).

    Centring decorrelates the intercept from the trend; the reported trend f(t) - f(t_1) is
    relative to the first period whatever the parametrisation.
    """
    T = len(periods)
    if spec.trend in ("period", "rw1"):
        return None, [str(p) for p in periods]
    if spec.trend == "linear":
        sd = periods.std(ddof=1) if T > 1 else 1.0
        return ((periods - periods.mean()) / sd)[:, None], ["period_sd"]
    df = max(1, min(spec.spline_df, T - 1))
    k = min(3, df)
    n_interior = df + 1 - (k + 1)
    x = periods.astype(float)
    inner = np.quantile(x, np.linspace(0, 1, n_interior + 2)[1:-1]) if n_interior > 0 else []
    t = np.r_[[x.min()] * (k + 1), inner, [x.max()] * (k + 1)]
    B = BSpline.design_matrix(x, t, k).toarray()[:, 1:]  # B-spline basis minus the first
    return B - B.mean(axis=0), [f"spline[{i}]" for i in range(B.shape[1])]


def nb_shape(spec: ModelSpec, n, phi):
    """Negative-binomial shape of a cell's count (NB2: Var = m + m^2 / shape).

    ``overdispersion: patient``: the cell's count is a sum of n per-patient NB(., phi) counts with
    a common mean, which is NB with shape n phi. ``cell``: the count was recorded per cell
    (incidents per ward-month), so the overdispersion belongs to the cell: shape phi.
    """
    return n * phi if spec.overdispersion == "patient" else phi + 0 * n


def standardised_fidelity(cells: pd.DataFrame) -> tuple[np.ndarray | None, float, float]:
    """(F, centre, scale): fidelity standardised over the treated cluster-periods (unweighted,
    ddof = 1) and 0 in control cells; F is None when a treated cluster-period lacks fidelity or
    fidelity does not vary. Shared by the Bayesian design and the frequentist cross-checks."""
    treated = cells["treated"].to_numpy() == 1
    tcp = cells.loc[treated].drop_duplicates(["cluster", "period"])["fidelity"]
    if not (tcp.notna().all() and tcp.std(ddof=1) > 0):
        return None, np.nan, np.nan
    centre, scale = float(tcp.mean()), float(tcp.std(ddof=1))
    return np.where(treated, (cells["fidelity"].to_numpy(float) - centre) / scale, 0.0), centre, scale


def season_basis(spec: ModelSpec, periods: np.ndarray) -> np.ndarray:
    """Fourier basis per period (periods x 2K): sin(2 pi k t / L), then cos, k = 1..K."""
    k = np.arange(1, spec.harmonics + 1)
    angle = 2 * np.pi * np.outer(periods, k) / spec.season_length
    return np.column_stack([np.sin(angle), np.cos(angle)])


def _covariates(cells: pd.DataFrame, names: list[str], w: np.ndarray):
    cols, labels = [], []
    for name in names:
        if name not in cells:
            raise QialignError(f"covariate '{name}' is not a column of the analysed cells")
        x = cells[name]
        if pd.api.types.is_numeric_dtype(x) and not pd.api.types.is_bool_dtype(x):
            cols.append(x.to_numpy(float))
            labels.append(name)
        else:
            levels = sorted(pd.unique(x.astype(str)))
            for lev in levels[1:]:
                cols.append((x.astype(str) == lev).to_numpy(float))
                labels.append(f"{name}[{lev}]")
    if not cols:
        return np.zeros((len(cells), 0)), [], np.zeros(0), np.ones(0)
    X = np.column_stack(cols)
    center = np.average(X, axis=0, weights=w)
    var = np.average((X - center) ** 2, axis=0, weights=w) * w.sum() / max(w.sum() - 1, 1)
    scale = np.where(var > 0, np.sqrt(var), 1.0)
    return (X - center) / scale, labels, center, scale


def _indices(cells: pd.DataFrame) -> dict:
    """Cluster, site, period and cluster-period ids (the one id order, ``qialign.ids``) and each
    cell's index into them."""
    clusters = sort_ids(cells["cluster"])
    sites = sort_ids(cells["site"])
    periods = np.sort(pd.unique(cells["period"].astype(int)))
    cp = cells[["cluster", "period"]].drop_duplicates().sort_values(["cluster", "period"], key=ids_key)
    cp = cp.reset_index(drop=True)
    cp["cp"] = np.arange(len(cp))
    cp_idx = cells[["cluster", "period"]].merge(cp, how="left", on=["cluster", "period"])["cp"]
    return {
        "clusters": clusters,
        "cluster_idx": pd.Categorical(cells["cluster"], categories=clusters).codes.astype(int),
        "sites": sites,
        "site_idx": pd.Categorical(cells["site"], categories=sites).codes.astype(int),
        "cluster_site": cells.groupby("cluster")["site"]
        .first()
        .reindex(clusters)
        .map(sites.index)
        .to_numpy(int),
        "periods": periods,
        "period_idx": np.searchsorted(periods, cells["period"].astype(int).to_numpy()),
        "cp_keys": cp,
        "cp_idx": cp_idx.to_numpy(int),
    }


def _exposure(cells: pd.DataFrame, spec: ModelSpec) -> dict:
    """h(e) per cell (step 1, ramp min(e / L, 1)), exposure-time levels and indices (eti), the
    slope-change regressor max(e - 1, 0)."""
    treated = cells["treated"].to_numpy(int)
    e = cells["exposure_time"].to_numpy(int) * treated
    if spec.exposure == "ramp":
        h = np.minimum(e / spec.ramp_periods, 1.0) * treated
    else:
        h = treated.astype(float)
    eti_levels = np.sort(np.unique(e[treated == 1])) if treated.any() else np.array([1])
    eti_idx = np.where(treated == 1, np.searchsorted(eti_levels, e), 0)
    if not treated.any():
        raise QialignError(f"outcome {spec.outcome}: no treated cells, no effect to estimate")
    slope = np.maximum(e - 1, 0).astype(float) * treated if spec.slope_change else None
    return {"treated": treated, "h": h, "eti_levels": eti_levels, "eti_idx": eti_idx, "slope": slope}


def _alignment(spec: ModelSpec, alignment: pd.Series | None, clusters: list[str]) -> dict:
    """A_j = (a_j - mean a) / sd a over the analysed clusters (unweighted, ddof = 1), or None."""
    if "alignment" not in spec.moderators or alignment is None:
        return {"A": None, "align_raw": None, "align_center": np.nan, "align_scale": np.nan}
    al = alignment.copy()
    al.index = al.index.astype(str)
    align_raw = al.reindex(clusters).astype(float)
    if align_raw.isna().any():
        bad = ", ".join(align_raw.index[align_raw.isna()])
        raise QialignError(f"alignment missing for analysed cluster(s): {bad}")
    a_c, a_s = float(align_raw.mean()), float(align_raw.std(ddof=1))
    if not a_s > 0:
        raise QialignError("alignment is constant over clusters; cannot standardise it")
    A = ((align_raw - a_c) / a_s).to_numpy(float)
    return {"A": A, "align_raw": align_raw, "align_center": a_c, "align_scale": a_s}


def _outcome(cells: pd.DataFrame, spec: ModelSpec, n: np.ndarray) -> dict:
    """The family's cell statistics, their standardisation and the intercept prior centre mu0
    (the empirical link-scale mean)."""
    y: dict = {}
    y_c, y_s = 0.0, 1.0
    if FAMILIES[spec.family].kind == "binary":
        y["events"] = cells["events"].to_numpy(float)
        p = np.clip(y["events"].sum() / n.sum(), 1e-3, 1 - 1e-3)
        mu0 = float(logit(p))
    elif FAMILIES[spec.family].kind == "continuous":
        y, y_c, y_s = _standardise_y(cells)
        mu0 = 0.0
    else:
        y["count"] = cells["count"].to_numpy(float)
        y["exposure"] = cells["exposure"].to_numpy(float)
        if (y["exposure"] <= 0).any():
            raise QialignError(f"outcome {spec.outcome}: exposure must be > 0 in every cell")
        mu0 = float(np.log(max(y["count"].sum(), 0.5) / y["exposure"].sum()))
    return {"y": y, "y_center": y_c, "y_scale": y_s, "mu0": mu0}


def build_design(cells: pd.DataFrame, spec: ModelSpec, alignment: pd.Series | None = None) -> Design:
    """Validate the cells and compute every array the model needs."""
    missing = [c for c in (*REQUIRED, *FAMILIES[spec.family].cell_columns) if c not in cells]
    if missing:
        raise QialignError(
            f"outcome {spec.outcome} ({spec.family}): cells lack column(s) {', '.join(missing)}"
        )
    cells = cells.reset_index(drop=True).copy()
    if "site" not in cells:
        cells["site"] = "all"
    cells["cluster"] = cells["cluster"].astype(str)
    cells["site"] = cells["site"].astype(str)
    n = cells["n"].to_numpy(float)
    if (n <= 0).any():
        raise QialignError(f"outcome {spec.outcome}: cells with n <= 0")
    ids = _indices(cells)
    exposure = _exposure(cells, spec)
    trend_P, trend_names = trend_basis(spec, ids["periods"])
    Z, cov_names, cov_center, cov_scale = _covariates(cells, spec.covariates, n)
    F, f_c, f_s = None, np.nan, np.nan
    if "fidelity" in spec.moderators and "fidelity" in cells:
        F, f_c, f_s = standardised_fidelity(cells)
    return Design(
        cells=cells,
        family=spec.family,
        n=n,
        **ids,
        **exposure,
        trend_P=trend_P,
        trend_names=trend_names,
        Z=Z,
        cov_names=cov_names,
        cov_center=cov_center,
        cov_scale=cov_scale,
        **_alignment(spec, alignment, ids["clusters"]),
        season=season_basis(spec, ids["periods"]) if spec.harmonics else None,
        F=F,
        fid_center=f_c,
        fid_scale=f_s,
        **_outcome(cells, spec, n),
    )
