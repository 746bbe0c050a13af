"""Power of a trial's own schedule (and of it repeated) from its prepared cells: ``power.csv``.

The design is read off the outcome's cells, not assumed: X[j, t] is the treated indicator of
cluster j in period t (NaN where the cluster-period was not observed), m[j, t] its patients.
The total variance comes from the data: p(1 - p) for a binary outcome (p the overall risk), the
pooled variance of y (gaussian) or log y (lognormal). For each ICC x CAC of the config the GLS
variance of the treatment effect (and of the treatment x alignment interaction, alignment
standardised and balanced within sequences) gives power for the configured effects and the
minimum detectable effect MDE = (z_{1-alpha/2} + z_target) SE.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.special import ndtri

from qialign.config import TrialConfig, load_trial_config, trial_config
from qialign.data.io import read_results_parquet
from qialign.errors import QialignError
from qialign.families import FAMILIES, of_kind
from qialign.ids import sort_ids
from qialign.power import VarianceComponents, interaction_variance, power, treatment_variance

#: families with an analytic power (GLS on cell means): binary and continuous
SUPPORTED = (*of_kind("binary"), *of_kind("continuous"))
COLUMNS = [
    "trial", "outcome", "design", "replicates", "clusters", "periods", "m", "icc", "cac",
    "total_variance", "estimand", "effect", "se", "power", "mde", "target", "alpha", "method",
]  # fmt: skip


def power_outcome(cfg: dict) -> str | None:
    """The configured power outcome, else the first binary or continuous outcome (None if none)."""
    name = cfg["power"].get("outcome")
    if name is not None:
        if name not in cfg["outcomes"]:
            raise QialignError(f"{cfg['id']}: power/outcome '{name}' is not an outcome of the trial")
        if cfg["outcomes"][name]["family"] not in SUPPORTED:
            raise QialignError(
                f"{cfg['id']}: power/outcome '{name}' is {cfg['outcomes'][name]['family']}; analytic power "
                f"covers {', '.join(SUPPORTED)} outcomes"
            )
        return name
    return next((o for o, c in cfg["outcomes"].items() if c["family"] in SUPPORTED), None)


def schedule(cells: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, list, list]:
    """(X, m, clusters, periods): treated indicator and patients per cluster-period, NaN if unobserved."""
    cp = cells.groupby(["cluster", "period"], as_index=False).agg(n=("n", "sum"), treated=("treated", "max"))
    X = cp.pivot(index="cluster", columns="period", values="treated")
    X = X.reindex(sort_ids(X.index))  # clusters in the one order of ids
    m = cp.pivot(index="cluster", columns="period", values="n").reindex_like(X)
    return X.to_numpy(float), m.to_numpy(float), X.index.tolist(), X.columns.tolist()


def total_variance(cells: pd.DataFrame, family: str) -> float:
    n = cells["n"].sum()
    if FAMILIES[family].kind == "binary":
        p = cells["events"].sum() / n
        return float(p * (1 - p))
    mean = cells["sum"].sum() / n
    return float((cells["sumsq"].sum() - n * mean**2) / (n - 1))


def power_rows(trial: TrialConfig, outcome: str, cells: pd.DataFrame) -> pd.DataFrame:
    """One row per schedule replicate x ICC x CAC x estimand x effect (``trial.power``)."""
    pw = trial.power
    X, m, clusters, periods = schedule(cells)
    m = np.where(np.isnan(X), np.nan, np.nan_to_num(m, nan=0.0))
    m_cells = np.where(np.isnan(X), 1.0, m)  # unobserved cells carry no information whatever m is
    s2 = total_variance(cells, trial.outcomes[outcome].family)
    z = ndtri(1 - pw.alpha / 2) + ndtri(pw.target)
    rows = []
    for k in pw.replicates:
        Xk, mk = np.tile(X, (k, 1)), np.tile(m_cells, (k, 1))
        for icc in pw.icc:
            for cac in pw.cac:
                vc = VarianceComponents.from_correlations(icc=icc, cac=cac, total_variance=s2)
                for estimand, variance, effects in (
                    ("treatment", treatment_variance, pw.effects),
                    ("interaction", interaction_variance, pw.interaction_effects),
                ):
                    se = float(np.sqrt(variance(Xk, mk, vc)))
                    for eff in effects or [np.nan]:
                        rows.append(
                            {
                                "trial": trial.id,
                                "outcome": outcome,
                                "design": "trial schedule" if k == 1 else f"trial schedule x{k}",
                                "replicates": k,
                                "clusters": k * len(clusters),
                                "periods": len(periods),
                                "m": float(np.nanmean(m)),
                                "icc": icc,
                                "cac": cac,
                                "total_variance": s2,
                                "estimand": estimand,
                                "effect": eff,
                                "se": se,
                                "power": power(eff, se, pw.alpha) if np.isfinite(eff) else np.nan,
                                "mde": z * se,
                                "target": pw.target,
                                "alpha": pw.alpha,
                                "method": "gls_normal",
                            }
                        )
    return pd.DataFrame(rows, columns=COLUMNS)


def power_step(config_path: str | Path, prepared_root: Path, out: Path) -> pd.DataFrame:
    """Write ``out`` (power.csv) for the trial; a header-only table when no outcome is supported."""
    cfg = load_trial_config(config_path)
    outcome = power_outcome(cfg)
    if outcome is None:
        table = pd.DataFrame(columns=COLUMNS)
    else:
        where = prepared_root / outcome
        if not (where / "cells.parquet").is_file() or not (where / "prepared.json").is_file():
            raise QialignError(
                f"{where}: no prepared cells (cells.parquet, prepared.json) for outcome '{outcome}'; "
                f"run the workflow first, e.g. snakemake --cores 2 {where}/cells.parquet"
            )
        cells = read_results_parquet(where / "cells.parquet")
        record = json.loads((prepared_root / outcome / "prepared.json").read_text())
        if record.get("family", cfg["outcomes"][outcome]["family"]) not in SUPPORTED:
            raise QialignError(f"{outcome}: analytic power covers {', '.join(SUPPORTED)} outcomes")
        table = power_rows(trial_config(cfg), outcome, cells)
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out, index=False)
    return table
