"""Frequentist cross-checks of one outcome on the same prepared data, at the level it was recorded."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from qialign.alignment import standardise_over_clusters
from qialign.alignment.debias import MODERATOR_COLUMN
from qialign.config import load_trial_config, models_for
from qialign.data.io import read_results_parquet
from qialign.errors import QialignError
from qialign.frequentist import cross_check
from qialign.frequentist.its import its_cross_check
from qialign.ids import sort_ids
from qialign.models import exposure
from qialign.models.design import standardised_fidelity
from qialign.models.spec import ModelSpec
from qialign.results import frequentist_rows
from qialign.steps.alignment import moderator_alignment

#: table an outcome was recorded in -> level of the cross-check
LEVELS = {"patients": "row", "cluster_periods": "cell"}


def recorded_level(record: dict, prepared_dir: Path) -> str:
    """``row`` (patients) or ``cell`` (cluster_periods), from ``prepared.json``'s ``table``."""
    table = record.get("table", record.get("exclusions", {}).get("table"))
    if table not in LEVELS:
        raise QialignError(
            f"{prepared_dir / 'prepared.json'} does not say which table outcome "
            f"'{record.get('outcome')}' came from (key 'table': patients or cluster_periods); "
            "re-run the prepare step"
        )
    return LEVELS[table]


def _moderators(cfg: dict, primary: dict, rows: pd.DataFrame, scores: Path) -> list[str]:
    """Add standardised moderator columns to ``rows`` as the Bayesian model uses them; return names.

    Alignment (cluster level): mean 0, SD 1 over clusters. Fidelity (cluster-period level):
    standardised over the treated cluster-periods and 0 in control cells, so it is its own
    interaction with treatment (see :mod:`qialign.frequentist.design`).
    """
    names = []
    if "alignment" in primary["moderators"] and cfg["alignment"]["source"] != "none":
        clusters = sort_ids(rows["cluster"])
        al = cfg["alignment"]
        raw, _, _ = moderator_alignment(scores, al["wave"], clusters, MODERATOR_COLUMN[al["score"]])
        rows["alignment_z"] = rows["cluster"].map(standardise_over_clusters(raw))
        names.append("alignment_z")
    if "fidelity" in primary["moderators"] and "fidelity" in rows.columns:
        fidelity = standardised_fidelity(rows)[0]
        if fidelity is not None:
            rows["fidelity_z"] = fidelity
            names.append("fidelity_z")
    return names


def eti_settings(spec: ModelSpec, rows: pd.DataFrame) -> dict | None:
    """An eti primary model's TATE window and PTE exposure time (validated as the fit validates
    them, against the treated rows' exposure times) for the ETI cross-check; None otherwise."""
    if spec.exposure != "eti":
        return None
    levels = sorted(int(e) for e in rows.loc[rows["treated"] == 1, "exposure_time"].unique())
    return {"window": exposure.window(spec, levels), "pte_at": exposure.pte_time(spec, levels)}


def crosscheck_step(
    config_path: str | Path, outcome: str, prepared_dir: Path, scores: Path, out: Path
) -> pd.DataFrame:
    """GEE (four sandwich corrections), MixedLM and cluster-robust GLM rows for ``outcome``; for an
    interrupted time series, segmented regression (quasi-Poisson or OLS, model and Newey-West SEs).

    Uses the primary model's trend (period or linear; spline/rw1 fall back to categorical periods)
    and its moderators, so the two analyses answer the same question; patients are analysed as
    rows, cluster_periods as cells (:func:`qialign.frequentist.cross_check`).
    """
    cfg = load_trial_config(config_path)
    primary = models_for(cfg, outcome)[0]  # the model the report sets the cross-checks against
    rows = read_results_parquet(prepared_dir / "rows.parquet")
    record = json.loads((prepared_dir / "prepared.json").read_text())
    level = recorded_level(record, prepared_dir)
    covariates = record["covariates"] if primary["covariates"] else []
    moderators = _moderators(cfg, primary, rows, scores)
    family = cfg["outcomes"][outcome]["family"]
    spec = ModelSpec.from_config(primary, outcome, cfg["outcomes"][outcome], cfg, table=record.get("table"))
    trend = spec.trend if spec.trend in ("period", "linear") else "period"
    tables = []
    try:
        if cfg["design"] != "interrupted_time_series":  # GEE etc. need concurrent controls
            tables.append(
                cross_check(
                    rows,
                    family,
                    trend=trend,
                    covariates=covariates,
                    moderators=moderators,
                    level=level,
                    interval=cfg["interval"]["prob"],
                    exposure=eti_settings(spec, rows),
                )
            )
    except ValueError as exc:
        raise QialignError(f"cross-check of outcome '{outcome}' ({level} level): {exc}") from None
    segmented = primary["slope_change"] or primary["harmonics"] > 0
    if cfg["design"] == "interrupted_time_series" or (
        segmented and cfg["design"] == "controlled_before_after"
    ):  # segmented regression: one series, or treated vs control series (controlled ITS)
        its = its_cross_check(
            rows,
            family,
            harmonics=primary["harmonics"],
            period=primary["season_length"],
            slope_change=primary["slope_change"],
            interval=cfg["interval"]["prob"],
        )
        if moderators:  # one series summed over clusters cannot carry a cluster-level moderator
            why = f"no moderator ({', '.join(moderators)}): the series pools its clusters"
            its["note"] = [f"{x}; {why}" if x else why for x in its["note"].fillna("")]
        tables.append(its)
    table = frequentist_rows(
        pd.concat(tables, ignore_index=True), cfg["id"], outcome, primary["id"], cfg["interval"]["prob"]
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out, index=False)
    return table
