"""Model checks: prior and posterior predictive checks on cells (PSIS-LOO: ``models.loo``).

Posterior predictive check: for S posterior draws, replicate every cell's statistic (events,
count, or the sum of y*) from the likelihood and compare the observed cell means with the
replicated ones: per-cell predictive intervals, and Bayesian p-values P(T(y_rep) >= T(y)) for
T = Pearson chi-square sum_c (y_c - E_c)^2 / Var_c (draw-wise) and T = SD of the cell means.
p-values near 0 or 1 flag misfit.

These replicates condition on the posterior cluster-period effects, which nearly saturate the
cells, so they cannot see overdispersion the model lacks. The mixed check (Gelman, Meng & Stern
1996; Marshall & Spiegelhalter 2007) redraws, per posterior draw, the random effects of
``MIXED_REDRAWS`` from their hierarchical distribution given that draw's SDs (and AR(1) rho), then
the cell data, several times (``inner``). With M_c(s), W_c(s) the mean and variance of cell c over
draw s's mixed replicates, T(y; s) = sum_c (y_c - M_c)^2 / W_c and p = P(T(y_rep; s) >= T(y; s)):
near 0 the data spread more than the model's hierarchy allows (a Poisson fit to NB counts), near
1 less.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pymc as pm
import pytensor.tensor as pt
import xarray as xr
from pymc.distributions.shape_utils import change_dist_size
from pytensor.graph import vectorize_graph
from pytensor.graph.traversal import ancestors
from scipy.special import expit

from qialign.families import FAMILIES
from qialign.models.build import build_model
from qialign.models.design import build_design, nb_shape
from qialign.models.likelihood import binomial_replicates

#: per mixed variant, the random effects redrawn (those the model has): new cluster-periods of the
#: same clusters, or new clusters (intercept, random treatment effect, cluster-period effects).
#: A model without cluster-period effects replicates new cells of its clusters in both variants.
#: Redrawn cluster intercepts stay sum-to-zero (variance sd^2 (1 - 1/K)); site effects are kept.
MIXED_REDRAWS = {
    "cluster_period": ("z_cluster_period", "eta_cluster_period"),
    "cluster": ("z_cluster_period", "eta_cluster_period", "z_cluster", "v_cluster", "z_treatment"),
}


def _thin(x: np.ndarray, max_draws: int) -> np.ndarray:
    flat = x.reshape(-1, *x.shape[2:])
    step = max(1, len(flat) // max_draws)
    return flat[::step][:max_draws]


def _moments_and_replicate(fit, eta: np.ndarray, rng, post_flat: dict):
    """Observed stat, its expectation and variance, and one replicate per draw (S, cell)."""
    d, fam, n = fit.design, fit.spec.family, fit.design.n
    if fam in ("bernoulli", "binomial"):
        p = expit(eta)
        obs, E, V = d.y["events"], n * p, n * p * (1 - p)
        rep = binomial_replicates(p, n, rng)
    elif fam == "poisson":
        E = d.y["exposure"] * np.exp(eta)
        obs, V = d.y["count"], E
        rep = rng.poisson(E)
    elif fam == "negative_binomial":
        E = d.y["exposure"] * np.exp(eta)
        a = nb_shape(fit.spec, n, post_flat["phi"][:, None])
        obs, V = d.y["count"], E + E**2 / a
        rep = rng.poisson(rng.gamma(a, E / a))
    else:
        s = post_flat["sigma"][:, None]
        obs, E, V = d.y["sum"], n * eta, n * s**2
        rep = rng.normal(E, np.sqrt(V))
    return obs, E, V, rep


def posterior_predictive_check(fit, *, prob: float = 0.9, max_draws: int = 1000, seed: int = 0) -> dict:
    """Return {"table": per-cell DataFrame, "p_chi2", "p_sd", "coverage", and the mixed
    p-values "p_mixed_cluster_period", "p_mixed_cluster" (``mixed_predictive_check``)}."""
    post = fit.idata["posterior"]
    if "eta" not in post.data_vars:
        raise ValueError("posterior predictive check needs stored cell predictions")
    rng = np.random.default_rng(seed)
    eta = _thin(np.asarray(post["eta"]), max_draws)
    flat = {k: _thin(np.asarray(post[k]), max_draws) for k in ("phi", "sigma") if k in post}
    obs, E, V, rep = _moments_and_replicate(fit, eta, rng, flat)
    n = fit.design.n
    t_obs = ((obs - E) ** 2 / V).sum(-1)
    t_rep = ((rep - E) ** 2 / V).sum(-1)
    sd_obs = (obs / n).std()
    sd_rep = (rep / n).std(-1)
    lo, hi = np.quantile(rep / n, [(1 - prob) / 2, (1 + prob) / 2], axis=0)
    table = fit.design.cells[["cluster", "period", "treated", "n"]].copy()
    table["observed_mean"] = obs / n
    table["predicted_mean"] = (E / n).mean(0)
    table["lower"], table["upper"] = lo, hi
    table["inside"] = (table["observed_mean"] >= lo) & (table["observed_mean"] <= hi)
    return {
        "table": table,
        "p_chi2": float((t_rep >= t_obs).mean()),
        "p_sd": float((sd_rep >= sd_obs).mean()),
        "coverage": float(table["inside"].mean()),
        **mixed_predictive_check(fit, seed=seed),
        "note": "gaussian/lognormal cell means are on the internal standardised scale",
    }


def _tiled_draws(fit, names: list[str], draws: int, inner: int) -> xr.Dataset:
    """``draws`` evenly thinned posterior draws of the variables ``names``, repeated ``inner``
    times along one draw axis."""
    post = fit.idata["posterior"].to_dataset()[names]
    flat = post.stack(sample=("chain", "draw"))
    flat = flat.isel(sample=slice(None, None, -(-flat.sizes["sample"] // draws)))
    flat = flat.drop_vars(["sample", "chain", "draw"]).rename(sample="draw")
    return xr.concat([flat] * inner, dim="draw").transpose("draw", ...)


def mixed_replicates(fit, redraw: tuple, *, draws: int, inner: int, seed: int = 0) -> np.ndarray:
    """Cell replicates (inner, S, cell): for each of S posterior draws, ``inner`` replicates with
    the model's ``redraw`` random effects drawn anew from their hierarchical distribution.

    One vectorised forward draw of the model's ``y``: every other free variable is replaced by
    its posterior draws (a leading draw axis), the redrawn effects that depend on none of them
    (standard-normal offsets) are resized to one draw per replicate, and the rest follows from the
    graph (0.55 s for 2,000 replicates of 3,984 cells, against 1.9 s drawing them one at a time).
    """
    model = fit.model if fit.model is not None else build_model(fit.design, fit.spec)
    redrawn = {model[v] for v in redraw if v in model.named_vars}
    kept = [rv for rv in model.free_RVs if rv not in redrawn]
    tiled = _tiled_draws(fit, [rv.name for rv in kept], draws, inner)
    replace = {rv: pt.constant(np.asarray(tiled[rv.name], rv.dtype), name=rv.name) for rv in kept}
    size = (tiled.sizes["draw"],)
    for rv in redrawn & set(model.free_RVs):
        if not set(ancestors([rv], blockers=kept)) & set(kept):
            replace[rv] = change_dist_size(rv, new_size=size, expand=True)
    [y] = vectorize_graph([model["y"]], replace=replace)
    y = pm.compile([], y, random_seed=seed, mode="FAST_COMPILE")()
    return np.asarray(y).reshape(inner, -1, y.shape[-1])


def mixed_p_value(observed: np.ndarray, replicates: np.ndarray) -> float:
    """Mixed p-value from replicates (inner, S, cell), inner >= 3.

    Per draw s, M_c and W_c are the mean and variance of cell c over replicates 1..inner-1, and
    T(y; s) = sum_c (y_c - M_c)^2 / W_c; replicate 0, left out of M and W, is compared with the
    data on the same footing: p = mean_s [T(y_rep,0; s) >= T(y; s)]. Cells whose replicates do
    not vary are left out.
    """
    rest = replicates[1:]
    m, w = rest.mean(0), rest.var(0, ddof=1)
    keep = w > 0
    safe = np.where(keep, w, 1.0)
    t_obs = np.where(keep, (observed - m) ** 2 / safe, 0.0).sum(-1)
    t_rep = np.where(keep, (replicates[0] - m) ** 2 / safe, 0.0).sum(-1)
    return float((t_rep >= t_obs).mean())


def mixed_predictive_check(fit, *, draws: int = 200, inner: int = 10, seed: int = 0) -> dict:
    """{"p_mixed_<variant>": mixed p-value} for each variant of ``MIXED_REDRAWS``."""
    obs = np.asarray(fit.idata["observed_data"]["y"], float)
    return {
        f"p_mixed_{variant}": mixed_p_value(
            obs, mixed_replicates(fit, redraw, draws=draws, inner=inner, seed=seed)
        )
        for variant, redraw in MIXED_REDRAWS.items()
    }


def prior_predictive_check(
    cells: pd.DataFrame, spec, *, alignment: pd.Series | None = None, draws: int = 500, seed: int = 0
) -> pd.DataFrame:
    """Quantiles (5%, 50%, 95%) of what the priors imply, next to the observed value.

    Rows: the natural-scale treatment effect, the overall mean of the cells' outcome statistic per
    patient (risk, count per patient, standardised mean) and the SD of the cell means.
    """
    design = build_design(cells, spec, alignment)
    model = build_model(design, spec)
    with model:
        pp = pm.sample_prior_predictive(draws=draws, random_seed=seed)
    theta = np.asarray(pp["prior"]["treatment_effect"]).ravel()
    nat = FAMILIES[spec.family].natural(theta)
    y = np.asarray(pp["prior_predictive"]["y"]).reshape(-1, design.n_cells)
    obs = np.asarray(pp["observed_data"]["y"]) if "observed_data" in pp.children else None
    n = design.n
    rows = [("treatment_effect_natural (" + FAMILIES[spec.family].natural_scale + ")", nat, np.nan)]
    obs_mean = obs.sum() / n.sum() if obs is not None else np.nan
    obs_sd = (obs / n).std() if obs is not None else np.nan
    rows.append(("outcome mean per patient", y.sum(-1) / n.sum(), obs_mean))
    rows.append(("SD of cell means", (y / n).std(-1), obs_sd))
    return pd.DataFrame(
        [
            {
                "quantity": name,
                "q05": np.quantile(x, 0.05),
                "q50": np.quantile(x, 0.5),
                "q95": np.quantile(x, 0.95),
                "observed": o,
            }
            for name, x, o in rows
        ]
    )
