"""Gather every fit's and cross-check's rows into results/<trial>/estimates.csv; LOO per outcome."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from qialign.data.io import read_results_csv
from qialign.steps.fit import ESTIMATE_COLUMNS


def collect_estimates(bayes: list[Path], crosschecks: list[Path], out: Path, interval: float) -> pd.DataFrame:
    """One table, DESIGN §5 columns; frequentist rows carry method names, blank r_hat/ess_bulk."""
    frames = [read_results_csv(p) for p in bayes]
    for path in crosschecks:
        freq = read_results_csv(path)
        freq = freq.assign(model="primary", interval=interval, r_hat=float("nan"), ess_bulk=float("nan"))
        frames.append(freq)
    table = pd.concat(frames, ignore_index=True)[ESTIMATE_COLUMNS]
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out, index=False)
    return table


def compare_models(posteriors: dict[str, Path], out: Path) -> pd.DataFrame:
    """PSIS-LOO comparison of one outcome's model variants (a single model gets its own LOO row)."""
    import arviz as az

    from qialign.models import load_posterior

    trees = {name: load_posterior(path)[0] for name, path in posteriors.items()}
    if len(trees) == 1:
        ((name, tree),) = trees.items()
        loo = az.loo(tree, pointwise=True)
        table = pd.DataFrame(
            [
                {
                    "model": name,
                    "rank": 0,
                    "elpd_loo": float(loo.elpd),
                    "se": float(loo.se),
                    "p_loo": float(loo.p),
                    "pareto_k_max": float(pd.Series(loo.pareto_k.values.ravel()).max()),
                }
            ]
        )
    else:
        table = az.compare(trees).reset_index(names="model")
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out, index=False)
    return table
