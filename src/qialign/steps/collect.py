"""Gather every fit's and cross-check's rows into results/<trial>/estimates.csv; LOO per outcome."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from qialign.data.io import read_results_csv
from qialign.inference.posterior_io import load_posterior
from qialign.models.checks import loo_table
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
    """PSIS-LOO of one outcome's model variants (``models.checks.loo_table``)."""
    table = loo_table({name: load_posterior(path)[0] for name, path in posteriors.items()})
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out, index=False)
    return table
