"""Pooling the refits of ``propagation: draws`` into one posterior and one set of diagnostics.

The pooled posterior is the equal-weight mixture over alignment draws (the method of composition):
refit k's chains follow refit k-1's. Each refit is checked on its own (R-hat within a refit; between
refits the posteriors differ by design); the pooled bulk/tail ESS of a parameter is the sum over
refits, divergences are summed, E-BFMI is per chain of every refit.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from qialign.inference.diagnostics import summary_table
from qialign.inference.ess_target import concat_chains


def _stacked_tree(runs: list[dict], A: np.ndarray, clusters: list[str]) -> xr.DataTree:
    """Posterior and sample stats of every refit along one chain axis; the alignment each draw
    used is stored as ``alignment_z`` (chain, draw, cluster)."""
    trees = []
    for k, run in enumerate(runs):
        post = run["idata"]["posterior"].to_dataset()
        shape = (post.sizes["chain"], post.sizes["draw"], len(A[k]))
        post["alignment_z"] = (("chain", "draw", "cluster"), np.broadcast_to(A[k], shape))
        stats = run["idata"]["sample_stats"].to_dataset()
        trees.append(
            xr.DataTree.from_dict({"posterior": post.assign_coords(cluster=clusters), "sample_stats": stats})
        )
    return concat_chains(trees)


def _pooled_summary(idata, runs: list[dict]) -> pd.DataFrame:
    """Pooled means and SDs; R-hat the worst refit's, ESS summed over refits."""
    summ = summary_table(idata)
    per = [run["details"]["summary"] for run in runs]
    summ["r_hat"] = pd.concat([t["r_hat"] for t in per], axis=1).max(axis=1)
    for col in ("ess_bulk", "ess_tail"):
        summ[col] = pd.concat([t[col] for t in per], axis=1).sum(axis=1)
    summ["mcse_mean"] = summ["sd"] / np.sqrt(summ["ess_bulk"])
    return summ


def pool_refits(runs: list[dict], A: np.ndarray, clusters: list[str], th: dict) -> dict:
    """One result (as ``sampling.sample_with_retry`` returns) from the refits ``runs``, refit k
    having used the standardised alignment ``A[k]``; ``th`` are the trial's thresholds."""
    idata = _stacked_tree(runs, A, clusters)
    summ = _pooled_summary(idata, runs)
    div = sum(run["details"]["divergences"] for run in runs)
    n_draws = idata["posterior"].sizes["chain"] * idata["posterior"].sizes["draw"]
    details = {
        "summary": summ,
        "divergences": div,
        "divergence_rate": div / n_draws,
        "ebfmi": [b for run in runs for b in run["details"]["ebfmi"]],
        "r_hat_max": float(summ["r_hat"].max()),
        "ess_bulk_min": float(summ["ess_bulk"].min()),
        "ess_tail_min": float(summ["ess_tail"].min()),
        "mcse_mean_max": float(summ["mcse_mean"].max()),
        "thresholds": th,
        "attempts": [a for run in runs for a in run["details"]["attempts"]],
        "refits": len(runs),
    }
    problems = [f"alignment draw {k}: {p}" for k, run in enumerate(runs) for p in run["problems"]]
    if div > th["divergences_max"]:
        problems.append(f"{div} divergent transition(s) over {len(runs)} refits > {th['divergences_max']}")
    if not details["ess_bulk_min"] >= th["ess_bulk_min"]:
        problems.append(f"pooled bulk ESS {details['ess_bulk_min']:.0f} < {th['ess_bulk_min']}")
    return {
        "idata": idata,
        "ok": not problems,
        "problems": problems,
        "details": details,
        "retried": any(run["retried"] for run in runs),
        "timings": {k: sum(run["timings"][k] for run in runs) for k in ("compile_s", "sample_s")},
        "sampler": runs[0]["sampler"],
    }
