"""Frequentist cross-checks of one outcome on the same prepared data."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from qialign.config import load_trial_config
from qialign.frequentist import cross_check
from qialign.frequentist.its import its_cross_check
from qialign.steps.alignment import moderator_alignment


def crosscheck_step(
    config_path: str | Path, outcome: str, prepared_dir: Path, scores: Path, out: Path
) -> pd.DataFrame:
    """GEE (four sandwich corrections), MixedLM and cluster-robust GLM rows for ``outcome``; for an
    interrupted time series, segmented regression (quasi-Poisson or OLS, model and Newey-West SEs).

    Uses the primary model's trend (period or linear; spline/rw1 fall back to categorical periods)
    and its moderators, so the two analyses answer the same question.
    """
    import json

    from qialign.alignment import standardise_over_clusters

    cfg = load_trial_config(config_path)
    primary = cfg["models"][0]
    rows = pd.read_parquet(prepared_dir / "rows.parquet")
    covariates = json.loads((prepared_dir / "prepared.json").read_text())["covariates"]
    if not primary["covariates"]:
        covariates = []
    moderators = []
    if "alignment" in primary["moderators"] and cfg["alignment"]["source"] != "none":
        clusters = sorted(rows["cluster"].astype(str).unique())
        raw, _ = moderator_alignment(pd.read_csv(scores), cfg["alignment"]["wave"], clusters)
        rows["alignment_z"] = rows["cluster"].astype(str).map(standardise_over_clusters(raw))
        moderators.append("alignment_z")
    trend = primary["trend"] if primary["trend"] in ("period", "linear") else "period"
    level = "row" if "y" in rows else "cell"
    family = cfg["outcomes"][outcome]["family"]
    tables = []
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
            )
        )
    segmented = primary.get("slope_change") or primary.get("harmonics", 0) > 0
    if cfg["design"] == "interrupted_time_series" or (
        segmented and cfg["design"] == "controlled_before_after"
    ):  # segmented regression: one series, or treated vs control series (controlled ITS)
        tables.append(
            its_cross_check(
                rows,
                family,
                harmonics=primary.get("harmonics", 0),
                period=primary.get("season_length", 12),
                slope_change=primary.get("slope_change", False),
                interval=cfg["interval"]["prob"],
            )
        )
    table = pd.concat(tables, ignore_index=True)
    table.insert(0, "outcome", outcome)
    table.insert(0, "trial", cfg["id"])
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out, index=False)
    return table
