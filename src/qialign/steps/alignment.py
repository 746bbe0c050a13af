"""Cluster alignment scores for a trial, from its survey or its clusters table.

Writes, next to ``scores.csv``: ``change.csv`` (alignment change from the first survey wave to each later
one, per cluster, with an interval; empty with a header when there is one wave or no survey) and, for
``method: latent``, ``alignment_draws.csv`` (long: draw, wave, wave_order, cluster, alignment; a fixed
number of evenly thinned joint posterior draws of the raw alignment, for ``draws`` / ``joint``
propagation; a header only for the other methods). Waves are text labels with their order in ``wave_order``
(1 = first; :mod:`qialign.waves`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from qialign.alignment import (
    alignment_change,
    descriptive_scores,
    latent_scores,
    standardise_over_clusters,
)
from qialign.config import load_trial_config
from qialign.data import load_trial
from qialign.data.io import read_results_csv
from qialign.errors import QialignError
from qialign.waves import ONE_WAVE, file_order, natural_basis, resolve_wave, wave_labels, wave_order

SCORE_COLUMNS = ["cluster", "wave", "wave_order", "method", "alignment", "alignment_sd", "lower", "upper"]
DRAW_COLUMNS = ["draw", "wave", "wave_order", "cluster", "alignment"]


def alignment_scores(config_path: str | Path, out: Path) -> pd.DataFrame:
    """Write ``scores.csv``: one row per cluster x wave (empty with a header when source is none)."""
    cfg = load_trial_config(config_path)
    al = cfg["alignment"]
    trial = load_trial(cfg)
    clusters = trial.clusters["cluster"].tolist()
    prob = float(cfg["interval"]["prob"])
    draws = None
    if al["source"] == "survey":
        _order_note(trial.survey["wave"], al)
        if al["method"] == "latent":
            fit = latent_scores(trial.survey, al, clusters, seed=cfg["seed"], sampler=al["latent"], prob=prob)
            scores, draws = fit.scores, fit.draws
            d, t = fit.diagnostics, fit.timings
            print(
                f"latent alignment: compile {t['compile_s']:.1f} s, sampling {t['sample_s']:.1f} s; "
                f"r_hat max {d.get('r_hat_max', float('nan')):.3f}, bulk ESS min "
                f"{d.get('ess_bulk_min', float('nan')):.0f}, {d['divergences']} divergence(s)"
            )
        else:
            scores = descriptive_scores(trial.survey, al, clusters, seed=cfg["seed"], prob=prob)
    elif al["source"] == "given":
        if "alignment" not in trial.clusters:
            raise QialignError(
                f"{cfg['data']['clusters']}: alignment.source is given but no 'alignment' column"
            )
        scores = pd.DataFrame(
            {
                "cluster": clusters,
                "wave": al["wave"] or ONE_WAVE,
                "wave_order": 1,
                "method": "given",
                "alignment": trial.clusters["alignment"].astype(float).to_numpy(),
                "alignment_sd": 0.0,
                "lower": np.nan,
                "upper": np.nan,
            }
        )
    else:
        scores = pd.DataFrame(columns=SCORE_COLUMNS)
    out.parent.mkdir(parents=True, exist_ok=True)
    scores.to_csv(out, index=False)
    change = alignment_change(scores, draws, prob=prob)
    change.to_csv(out.parent / "change.csv", index=False)
    # always written (header only unless latent), so that a rule can declare it as an output
    if draws is None:
        draws = pd.DataFrame(columns=DRAW_COLUMNS)
    draws.to_csv(out.parent / "alignment_draws.csv", index=False)
    return scores


def _order_note(waves: pd.Series, al: dict) -> None:
    """Say how the waves were ordered when text labels fell in natural (alphabetical) order."""
    order = wave_order(waves, al.get("waves"))
    if al.get("waves") is None and len(order) > 1 and natural_basis(order) == "labels":
        print(
            f"survey waves in natural (alphabetical) order: {', '.join(order)}; the first is the "
            "baseline of change.csv; list them in alignment.waves to fix the order"
        )


def moderator_alignment(
    path: Path, wave: str | int | None, clusters: list[str], score: str = "alignment"
) -> tuple[pd.Series | None, list[str], list[str]]:
    """Raw alignment per cluster for the model (the configured wave, a label; None = the first wave
    in the file's order; from ``scores.csv`` at ``path``; column ``score``), warnings, and the
    unscored clusters.

    ``clusters`` are text ids, as the scores' ids are read (``read_results_csv``). Clusters without a
    score are set to the mean of the others (z = 0), named in the warnings and returned; no cluster
    scored, or scores that do not vary, are a QialignError naming the file.
    """
    scores = read_results_csv(path)
    if scores.empty:
        return None, [], []
    try:
        wave = resolve_wave(wave, file_order(scores))
    except ValueError as exc:
        raise QialignError(f"{path}: {exc}") from None
    if score not in scores:
        raise QialignError(
            f"{path}: no column {score!r}: the scores predate alignment.score; re-run qialign alignment"
        )
    at = scores[wave_labels(scores["wave"]) == wave].set_index("cluster")[score].astype(float)
    scored = at.dropna().index.tolist()
    at = at.reindex(clusters)
    notes = []
    missing = at[at.isna()].index.tolist()
    if len(missing) == len(clusters):
        raise QialignError(
            f"{path}: no alignment score in wave {wave} for any analysed cluster "
            f"({', '.join(clusters)}); scored: {', '.join(scored) or 'none'}"
        )
    if missing:
        notes.append(f"no alignment score for cluster(s) {', '.join(missing)}: set to the mean (z = 0)")
        at = at.fillna(at.mean())
    try:
        standardise_over_clusters(at)
    except ValueError as exc:  # one value for every cluster
        raise QialignError(f"{path}: wave {wave}: {exc}") from None
    return at, notes, missing
