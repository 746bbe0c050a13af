"""A tiny valid trial (4 clusters, 2 sites, 5 periods, stepped wedge) that tests break one thing at a time.

``tiny_tables()`` returns the contract tables and a raw config; ``write_trial`` writes them into a
directory and returns the validated config (absolute paths). Row numbers in messages are 1-based
data rows, i.e. DataFrame position + 1.
"""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from qialign.config import validate_trial_config
from qialign.data import load_trial
from qialign.errors import DataValidationError

QIALIGN = str(Path(sys.executable).parent / "qialign")

CLUSTERS = ["A1", "A2", "B1", "B2"]
STARTS = {"A1": 2, "A2": 3, "B1": 4, "B2": 5}
PERIODS = [1, 2, 3, 4, 5]
PER_CELL = 3

RAW_CONFIG = {
    "id": "tiny",
    "title": "Tiny synthetic trial",
    "synthetic": True,
    "design": "stepped_wedge",
    "data": {},
    "outcomes": {
        "excess": {"family": "bernoulli"},
        "los": {"family": "lognormal"},
        "score": {"family": "gaussian"},
        "incidents": {"family": "negative_binomial", "exposure": "bed_days"},
    },
    "covariates": ["age", "comorbidity"],
    "alignment": {
        "source": "survey",
        "roles": {"clinical": ["doctor", "nurse"], "managerial": ["matron"]},
        "scale": {"min": 1, "max": 5},
        "domains": {"safety": ["q1", "q2"], "flow": ["q3"]},
        "reverse": ["q3"],
    },
    "seed": 1,
}


def tiny_tables(seed: int = 0) -> tuple[dict[str, pd.DataFrame], dict]:
    """The contract tables of the tiny trial and its raw config (data paths not yet filled)."""
    rng = np.random.default_rng(seed)
    clusters = pd.DataFrame(
        {
            "cluster": CLUSTERS,
            "site": ["S1", "S1", "S2", "S2"],
            "start_period": [STARTS[c] for c in CLUSTERS],
        }
    )
    rows = [(c, p) for c in CLUSTERS for p in PERIODS for _ in range(PER_CELL)]
    n = len(rows)
    patients = pd.DataFrame(
        {
            "id": [f"P{i:03d}" for i in range(1, n + 1)],
            "cluster": [r[0] for r in rows],
            "period": [r[1] for r in rows],
            "excess": rng.integers(0, 2, n),
            "los": np.round(rng.lognormal(1.0, 0.5, n), 3),
            "score": np.round(rng.normal(10, 2, n), 3),
            "age": rng.integers(40, 90, n),
            "comorbidity": rng.integers(0, 5, n),
        }
    )
    cells = [(c, p) for c in CLUSTERS for p in PERIODS]
    cluster_periods = pd.DataFrame(
        {
            "cluster": [c for c, _ in cells],
            "period": [p for _, p in cells],
            "n": [PER_CELL] * len(cells),
            "bed_days": np.round(rng.uniform(50, 100, len(cells)), 1),
            "incidents": rng.integers(0, 6, len(cells)),
        }
    )
    survey_rows = [(c, r) for c in CLUSTERS for r in ("doctor", "nurse", "matron")]
    survey = pd.DataFrame(
        {
            "respondent": [f"R{i}" for i in range(1, len(survey_rows) + 1)],
            "cluster": [c for c, _ in survey_rows],
            "role": [r for _, r in survey_rows],
            "wave": 1,
            "q1": rng.integers(1, 6, len(survey_rows)),
            "q2": rng.integers(1, 6, len(survey_rows)),
            "q3": rng.integers(1, 6, len(survey_rows)),
        }
    )
    treated = [(c, p) for c, p in cells if p >= STARTS[c]]
    implementation = pd.DataFrame(
        {
            "cluster": [c for c, _ in treated],
            "period": [p for _, p in treated],
            "fidelity": np.round(rng.uniform(0, 1, len(treated)), 3),
        }
    )
    tables = {
        "clusters": clusters,
        "patients": patients,
        "cluster_periods": cluster_periods,
        "survey": survey,
        "implementation": implementation,
    }
    return tables, copy.deepcopy(RAW_CONFIG)


def put(df: pd.DataFrame, column: str, rows, value) -> None:
    """Set cells by position (pandas 3 refuses lossy upcasts, so the column becomes object)."""
    if column not in df.columns:
        df[column] = np.nan
    df[column] = df[column].astype(object)
    df.loc[rows, column] = value


def write_trial(directory: Path, tables: dict[str, pd.DataFrame], raw: dict, fmt: str = "csv") -> dict:
    """Write tables (CSV or Parquet) and return the validated config with absolute paths."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    raw = copy.deepcopy(raw)
    for name, df in tables.items():
        path = directory / f"{name}.{fmt}"
        if fmt == "csv":
            df.to_csv(path, index=False)
        else:
            df.to_parquet(path, index=False)
        raw["data"][name] = str(path)
    return validate_trial_config(raw)


def write_config(directory: Path, cfg: dict) -> Path:
    """Write a trial config YAML (for CLI tests)."""
    path = Path(directory) / "trial.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def validate_concurrently(tmp_path_factory, makers: dict) -> dict:
    """``qialign validate`` on each case's config, all at once (each subprocess pays the import
    cost); ``makers`` maps name -> (directory -> config). Returns name -> (cfg, exit code, out, err)."""
    cases, procs = {}, {}
    for name, make in makers.items():
        d = tmp_path_factory.mktemp(name)
        cases[name] = make(d)
        cmd = [QIALIGN, "validate", str(write_config(d, cases[name]))]
        procs[name] = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out = {}
    for name, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=120)
        out[name] = (cases[name], proc.returncode, stdout, stderr)
    return out


def problems_of(cfg: dict) -> DataValidationError:
    """Load and return the DataValidationError (fails the test if loading succeeds)."""
    with pytest.raises(DataValidationError) as info:
        load_trial(cfg)
    return info.value


def find(err: DataValidationError, file_key: str, column: str | None, cfg: dict, text: str = ""):
    """The single problem for a table file and column whose text contains ``text``."""
    path = cfg["data"].get(file_key, file_key)
    hits = [p for p in err.problems if path in p.file and p.column == column and text in p.expected]
    assert hits, f"no problem for {file_key}/{column} ~ {text!r} in:\n{err}"
    return hits[0]


def test_tiny_trial_is_valid(tmp_path):
    tables, raw = tiny_tables()
    trial = load_trial(write_trial(tmp_path, tables, raw))
    assert trial.periods == PERIODS
    assert len(trial.patients) == len(CLUSTERS) * len(PERIODS) * PER_CELL
    assert set(trial.files) == set(tables)


def test_tiny_trial_without_optional_tables(tmp_path):
    tables, raw = tiny_tables()
    raw["alignment"] = {"source": "none"}
    for name in ("survey", "implementation", "cluster_periods"):
        tables.pop(name)
    raw["outcomes"].pop("incidents")
    trial = load_trial(write_trial(tmp_path, tables, raw))
    assert trial.survey is None and trial.implementation is None and trial.cluster_periods is None
