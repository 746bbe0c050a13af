"""Validate a trial and write its analysis tables: per-outcome rows and cluster-period cells."""

from __future__ import annotations

import json
from pathlib import Path

from qialign.config import load_trial_config
from qialign.data import aggregate, analysis_rows, load_trial, outcome_covariates, summarise


def _write_json(path: Path, record: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2, sort_keys=True, default=str) + "\n")


def validate_trial(config_path: str | Path, summary_out: Path | None, data_out: Path | None) -> str:
    """Validate config and data; optionally write the text summary and a JSON data record.

    The JSON record (files with SHA-256, exclusions per outcome, periods, clusters) feeds the report.
    """
    cfg = load_trial_config(config_path)
    trial = load_trial(cfg)
    text = summarise(trial)
    if summary_out is not None:
        summary_out.parent.mkdir(parents=True, exist_ok=True)
        summary_out.write_text(text + "\n")
    if data_out is not None:
        _write_json(
            data_out,
            {
                "trial": cfg["id"],
                "files": trial.files,
                "exclusions": trial.exclusions,
                "periods": trial.periods,
                "locations": trial.locations,
                "clusters": trial.clusters.astype(object)
                .where(trial.clusters.notna(), None)
                .to_dict("records"),
            },
        )
    return text


def prepare_outcome(config_path: str | Path, outcome: str, out_dir: Path) -> None:
    """Write ``rows.parquet`` (row level), ``cells.parquet`` (sufficient statistics) and ``prepared.json``."""
    cfg = load_trial_config(config_path)
    trial = load_trial(cfg)
    rows = analysis_rows(trial, outcome)
    covariates = outcome_covariates(trial, outcome)
    family = cfg["outcomes"][outcome]["family"]
    cells = aggregate(rows, family, covariates)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows.to_parquet(out_dir / "rows.parquet", index=False)
    cells.to_parquet(out_dir / "cells.parquet", index=False)
    _write_json(
        out_dir / "prepared.json",
        {
            "trial": cfg["id"],
            "outcome": outcome,
            "family": family,
            "table": trial.locations[outcome],  # patients (rows) or cluster_periods (cells)
            "covariates": covariates,
            "rows": len(rows),
            "cells": len(cells),
            "exclusions": trial.exclusions.get(outcome, {}),
            "files": trial.files,
        },
    )
