"""Power-scaling prior and likelihood sensitivity without refitting (Kallioinen et al. 2024).

The posterior is perturbed to p(theta)^alpha p(y | theta) (prior) or p(theta) p(y | theta)^alpha
(likelihood) for alpha = 0.99 and 1.01 by importance weights w ∝ exp((alpha - 1) log p(.)),
Pareto-smoothed; a parameter's sensitivity is the cumulative Jensen-Shannon distance between the
base and the perturbed posterior per unit of log2(alpha) (``arviz_stats.psense``, priorsense's
method). Above ``threshold`` the prior (or likelihood) is said to drive the parameter. Only the
top-level priors are scaled (fixed effects and scales, not the random effects whose priors
depend on other parameters). The Pareto k of each set of log weights says whether the weights
can be trusted (k <= PARETO_K_BAD); above it, the answer needs a refit with the scaled prior.
"""

from __future__ import annotations

import arviz_stats as azs
import numpy as np
import pandas as pd
import xarray as xr
from arviz_stats.base import array_stats

from qialign.results import PARETO_K_BAD

#: priorsense's perturbation: alpha below and above 1
ALPHAS = (0.99, 1.01)
#: the parameters whose sensitivity the report shows, when the model has them
PARAMETERS = ("treatment_effect", "alignment_interaction", "sd_cluster", "sd_cluster_period")
#: free variables whose prior depends on other parameters (random effects): not power-scaled
LATENT_PREFIXES = ("z_", "v_cluster", "eta_cluster_period")


def top_level_priors(tree: xr.DataTree) -> list[str]:
    """The log_prior variables of fixed effects and scales (not random effects)."""
    return [v for v in tree["log_prior"].data_vars if not str(v).startswith(LATENT_PREFIXES)]


def _component(tree: xr.DataTree, group: str, names: list[str] | None) -> np.ndarray:
    """log prior (of ``names``) or log likelihood, summed per draw: shape (chain, draw)."""
    ds = tree[group].to_dataset()
    ds = ds[names] if names else ds
    return sum(
        v.sum([d for d in v.dims if d not in ("chain", "draw")]) for v in ds.data_vars.values()
    ).to_numpy()


def pareto_k(log_component: np.ndarray) -> float:
    """The largest Pareto k of the smoothed weights (alpha - 1) log p over ``ALPHAS``."""
    flat = log_component.reshape(-1)
    return max(float(array_stats.psislw((a - 1.0) * flat, axis=-1)[1]) for a in ALPHAS)


def diagnosis(prior: float, likelihood: float, threshold: float) -> str:
    """priorsense's reading of the two sensitivities."""
    if prior >= threshold and likelihood >= threshold:
        return "prior-data conflict"
    if prior >= threshold:
        return "prior-sensitive (strong prior / weak likelihood)"
    if likelihood < threshold:
        return "weak likelihood"
    return "not sensitive"


def prior_sensitivity(tree: xr.DataTree, threshold: float) -> pd.DataFrame:
    """One row per parameter: prior and likelihood sensitivity, diagnosis, Pareto k of each set
    of weights and whether they are reliable."""
    params = [p for p in PARAMETERS if p in tree["posterior"].data_vars]
    priors = top_level_priors(tree)
    sens = {
        group: azs.psense(tree, var_names=params, group=group, alphas=ALPHAS, group_var_names=names)
        for group, names in (("prior", priors), ("likelihood", None))
    }
    k_prior = pareto_k(_component(tree, "log_prior", priors))
    k_lik = pareto_k(_component(tree, "log_likelihood", None))
    rows = []
    for p in params:
        prior, lik = float(sens["prior"][p].max()), float(sens["likelihood"][p].max())
        rows.append(
            {
                "parameter": p,
                "prior": prior,
                "likelihood": lik,
                "diagnosis": diagnosis(prior, lik, threshold),
                "pareto_k_prior": k_prior,
                "pareto_k_likelihood": k_lik,
                "reliable": bool(max(k_prior, k_lik) <= PARETO_K_BAD),
            }
        )
    return pd.DataFrame(rows)
