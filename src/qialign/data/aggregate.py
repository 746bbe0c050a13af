"""Cluster-period sufficient statistics.

One row per (cluster, site, period, treated, exposure_time, fidelity if present, covariate
pattern), sorted by cluster (natural order of ids, ``sort_ids``), period and pattern. Per family:

- bernoulli/binomial: ``n`` (total trials) and ``events``;
- gaussian: ``n``, ``sum`` and ``sumsq`` of y;
- lognormal: ``n``, ``sum`` and ``sumsq`` of log y;
- poisson/negative_binomial: ``n`` (rows), ``count`` (sum of y) and ``exposure`` (sum).

Rows that are already cells (they carry ``sd``: gaussian/lognormal cluster_periods summaries) give
sum = n * mean and sumsq = (n - 1) sd^2 + n mean^2; for lognormal the mean and SD are already on
the log scale. The binomial, gaussian, lognormal and poisson likelihoods on these statistics equal
the row-level likelihoods up to a constant. For negative_binomial that holds only when rows in a
cell share their mean and exposure (the sum of NB counts with a common dispersion is NB only then).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from qialign.families import FAMILIES
from qialign.ids import ID_COLUMNS, ids_key, natural_factorize

KEYS = ["cluster", "site", "period", "treated", "exposure_time"]


def aggregate(rows: pd.DataFrame, family: str, covariates: list[str]) -> pd.DataFrame:
    """Sufficient statistics per cluster-period and covariate pattern (see the module docstring)."""
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}")
    keys = KEYS + (["fidelity"] if "fidelity" in rows.columns else []) + list(covariates)
    n = rows["n"].astype("int64") if "n" in rows.columns else pd.Series(1, index=rows.index)
    y = rows["y"].astype("float64")
    work = rows[keys].copy()
    labels = {}
    for c in [k for k in keys if k in ID_COLUMNS]:  # group on natural codes: the same sums for 7 and 007
        work[c], labels[c] = natural_factorize(rows[c])
    work["n"] = n
    kind = FAMILIES[family].kind
    if kind == "binary":
        work["events"] = y
    elif kind == "continuous":
        if "sd" in rows.columns:  # cells: y is the mean (log scale for lognormal)
            sd = rows["sd"].astype("float64").fillna(0.0)
            work["sum"] = n * y
            work["sumsq"] = (n - 1) * sd**2 + n * y**2
        else:
            v = np.log(y) if family == "lognormal" else y
            work["sum"] = v
            work["sumsq"] = v**2
    else:
        work["count"] = y
        exp = rows["exposure"] if "exposure" in rows.columns else pd.Series(1.0, index=rows.index)
        work["exposure"] = exp.astype("float64")
    stats = dict.fromkeys(("n", *FAMILIES[family].cell_columns), "sum")
    out = work.groupby(keys, sort=True, dropna=False, observed=True).agg(stats).reset_index()
    for c, ids in labels.items():
        out[c] = pd.Series(ids, dtype="str").to_numpy()[out[c].to_numpy()]
    if kind != "continuous":
        col = FAMILIES[family].cell_outcome  # events or count: whole numbers
        out[col] = out[col].round().astype("int64")
    out["n"] = out["n"].astype("int64")
    sort = ["cluster", "period"] + [k for k in keys if k not in ("cluster", "period")]
    return out.sort_values(sort, kind="stable", key=ids_key).reset_index(drop=True)
