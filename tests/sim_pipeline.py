"""A simulated trial through the real steps: ``qialign.studies.simulate`` writes the tables, then
prepare, alignment scores and fit run as the workflow runs them (no hand-made intermediate files)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import yaml

from qialign.results import FitRecord
from qialign.steps.alignment import alignment_scores
from qialign.steps.fit import fit_step
from qialign.steps.prepare import prepare_outcome
from qialign.studies.simulate import simulate_trial


def write_trial(work: Path, sim: dict, seed: int, trial: dict) -> tuple[Path, dict]:
    """Simulate ``sim`` into ``work/data`` and write ``work/<id>.yaml`` from ``trial`` (data paths
    filled in for the tables the simulation made); return the config path and the truth."""
    sim_trial = simulate_trial(sim, seed)
    data = work / "data"
    sim_trial.write(data)
    tables = [t for t in ("clusters", "patients", "cluster_periods") if getattr(sim_trial, t) is not None]
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
