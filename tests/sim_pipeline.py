"""A simulated trial through the real steps: ``qialign.studies.simulate`` writes the tables, then
prepare, alignment scores and fit run as the workflow runs them (no hand-made intermediate files)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr
import yaml
from scipy import stats

from qialign.results import FitRecord
from qialign.steps.alignment import alignment_scores
from qialign.steps.fit import fit_step
from qialign.steps.prepare import prepare_outcome
from qialign.studies.simulate import simulate_trial

#: the simulated tables a trial config points at (the survey only through ``alignment.source``)
TABLES = ("clusters", "patients", "cluster_periods", "implementation")


def write_trial(work: Path, sim: dict, seed: int, trial: dict) -> tuple[Path, dict]:
    """Simulate ``sim`` into ``work/data`` and write ``work/<id>.yaml`` from ``trial`` (data paths
    filled in for the tables the simulation made); return the config path and the truth."""
    sim_trial = simulate_trial(sim, seed)
    data = work / "data"
    sim_trial.write(data)
    tables = [t for t in TABLES if getattr(sim_trial, t) is not None]
    cfg = {**trial, "data": {t: str(data / f"{t}.csv") for t in tables}, "seed": seed}
    path = work / f"{trial['id']}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path, sim_trial.truth


def fit_through_steps(config: Path, outcome: str, model: str, work: Path) -> tuple[pd.DataFrame, FitRecord]:
    """prepare -> alignment -> fit; returns (estimates indexed by estimand, the fit record)."""
    prepared = work / outcome
    prepare_outcome(config, outcome, prepared)
    scores = work / "alignment" / "scores.csv"
    if not scores.exists():
        alignment_scores(config, scores)
    out = work / outcome / model
    record = fit_step(config, outcome, model, prepared, scores, out)
    return pd.read_csv(out / "estimates.csv").set_index("estimand"), record


def posterior(work: Path, outcome: str, model: str) -> xr.Dataset:
    """The posterior group of the ``posterior.nc`` that :func:`fit_through_steps` wrote."""
    path = work / outcome / model / "posterior.nc"
    with xr.open_datatree(path, engine="h5netcdf") as tree:
        return tree["posterior"].to_dataset().load()


def summary(draws: xr.DataArray, prob: float = 0.9) -> pd.DataFrame:
    """Posterior mean, SD and the equal-tailed ``prob`` interval width of each element of a
    variable (rows: its non-sample coordinates, or one row ``value`` for a scalar)."""
    flat = draws.stack(sample=("chain", "draw")).transpose(..., "sample")
    values = flat.to_numpy().reshape(-1, flat.sizes["sample"])
    dims = [d for d in flat.dims if d != "sample"]
    index = pd.Index(flat[dims[0]].to_numpy().astype(str)) if dims else pd.Index(["value"])
    lo, hi = np.quantile(values, [(1 - prob) / 2, (1 + prob) / 2], axis=1)
    return pd.DataFrame(
        {"mean": values.mean(axis=1), "sd": values.std(axis=1, ddof=1), "width": hi - lo}, index=index
    )


def binomial_range(n: int, p: float, level: float = 0.99) -> tuple[int, int]:
    """(lo, hi) with P(lo <= X <= hi) >= ``level`` for X ~ Binomial(n, p), each tail <= (1 - level) / 2:
    the coverage counts a calibrated ``p`` interval gives in ``n`` replicates (fewer: too narrow,
    more: too wide)."""
    lo = int(stats.binom.ppf((1 - level) / 2, n, p))
    hi = int(stats.binom.ppf((1 + level) / 2, n, p))
    return lo, hi


ROOT = Path(__file__).resolve().parents[1]


def shipped_sicily(path: Path, **settings) -> tuple[Path, dict]:
    """The shipped Sicily trial (config/trials/sicily_its.yaml) with absolute data paths, only its
    ``its`` model (the tutorial's: level change, 2 harmonics, AR(1)) and top-level ``settings``
    replaced, written to ``path``; returns (path, config)."""
    cfg = yaml.safe_load((ROOT / "config" / "trials" / "sicily_its.yaml").read_text())
    cfg["data"] = {k: str(ROOT / v) for k, v in cfg["data"].items()}
    cfg["models"] = [m for m in cfg["models"] if m["id"] == "its"]
    cfg.update(settings)
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path, cfg
