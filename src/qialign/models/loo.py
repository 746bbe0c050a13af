"""PSIS-LOO comparison of an outcome's model variants (ArviZ's ``loo`` and ``compare``).

Only ArviZ's statistics are imported (not PyMC, not the plotting half of ArviZ), so the
``compare`` step that runs this starts quickly.
"""

from __future__ import annotations

import arviz_stats as azs
import numpy as np
import pandas as pd

from qialign.results import LOO_COLUMNS, PARETO_K_BAD


def loo_table(trees: dict) -> pd.DataFrame:
    """PSIS-LOO of an outcome's model variants (same cells), ``results.LOO_COLUMNS``: each model's
    elpd, p_loo and Pareto k diagnostics; with two or more, ``azs.compare``'s rank, difference to
    the best, its SE and stacking weights (one model: rank 0, difference NaN, weight 1)."""
    rows = []
    for name, tree in trees.items():
        loo = azs.loo(tree, pointwise=True)
        k = np.asarray(loo.pareto_k, float).ravel()
        rows.append(
            {
                "model": name,
                "elpd": float(loo.elpd),
                "se": float(loo.se),
                "p": float(loo.p),
                "n_pareto_k_bad": int((k > PARETO_K_BAD).sum()),
                "max_pareto_k": float(np.nanmax(k)),
            }
        )
    table = pd.DataFrame(rows).set_index("model")
    if len(trees) > 1:
        comp = pd.DataFrame(azs.compare(trees))[["rank", "elpd_diff", "dse", "weight"]]
        table = table.join(comp)
    else:
        table = table.assign(rank=0, elpd_diff=np.nan, dse=np.nan, weight=1.0)
    return table.reset_index().sort_values("rank")[list(LOO_COLUMNS)].reset_index(drop=True)


def compare_loo(fits: dict) -> pd.DataFrame:
    """``loo_table`` of fitted models (name -> FitResult)."""
    return loo_table({name: f.idata for name, f in fits.items()})
