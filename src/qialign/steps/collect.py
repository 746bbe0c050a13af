"""Gather every fit's and cross-check's rows into results/<trial>/estimates.csv; LOO per outcome."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from qialign.data.io import read_results_csv
from qialign.inference.posterior_io import load_posterior
from qialign.models.loo import loo_table
from qialign.results import ESTIMATE_COLUMNS


def collect_estimates(bayes: list[Path], crosschecks: list[Path], out: Path) -> pd.DataFrame:
    """The fits' and cross-checks' rows (already in ESTIMATE_COLUMNS' vocabulary) in one table."""
    frames = [read_results_csv(p) for p in [*bayes, *crosschecks]]
    table = pd.concat(frames, ignore_index=True)[list(ESTIMATE_COLUMNS)]
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out, index=False)
    return table


def compare_models(posteriors: dict[str, Path], out: Path) -> pd.DataFrame:
    """PSIS-LOO of one outcome's model variants (``models.loo.loo_table``)."""
    table = loo_table({name: load_posterior(path)[0] for name, path in posteriors.items()})
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out, index=False)
    return table
