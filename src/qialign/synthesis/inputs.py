"""What the synthesis reads from each trial's results, through the files the trial steps write.

Per trial (the block's outcome and model): the fit's posterior draws of the per-ward effect
theta + gamma z_j + delta_j (``cluster_effect`` in ``FIT_FILES["posterior"]``, on the common scale:
the link-scale effect for log_or / log_rr, effect / sigma per draw for smd), summarised by their
mean m and covariance S (a multivariate normal approximation of the trial's ward-effect posterior,
which keeps the correlation the shared theta and gamma induce; eigenvalues floored, :func:`floored`);
the fit record (reliability, seed, data hashes) for provenance; and each ward's alignment score and
its standard error (``scores.csv``, the trial's moderating wave and score column).

Only wards treated at some period contribute (``treated`` in ``FIT_FILES["counterfactual"]``): a
never-treated control ward's "effect" is the trial's fitted line plus the prior of its own
deviation, not a measurement of its effect.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from qialign.alignment.debias import MODERATOR_COLUMN
from qialign.data.io import read_results_csv
from qialign.errors import QialignError
from qialign.inference.posterior_io import load_posterior
from qialign.results import FitRecord
from qialign.synthesis.files import trial_files
from qialign.waves import file_order, resolve_wave, wave_labels

#: eigenvalues of a trial's ward-effect covariance are floored at this share of its mean ward variance
#: (:func:`floored`)
EIGEN_FLOOR = 0.5
#: the standard error given to a ward with no alignment score, in SDs of its trial's scores: its
#: alignment is then its trial's distribution (the latent model's prior), not a measurement
UNSCORED_SE_SDS = 3.0


@dataclass
class TrialInput:
    """One trial's contribution: wards, effect mean m and covariance S on the common scale, the
    alignment scores a with standard errors se, and where they came from."""

    trial: str
    outcome: str
    model: str
    wards: list[str]
    m: np.ndarray
    S: np.ndarray
    a: np.ndarray
    se: np.ndarray
    unscored: list[str]
    record: FitRecord
    files: dict[str, str]


def effect_draws(posterior: Path, scale: str) -> tuple[list[str], np.ndarray]:
    """(wards, draws (S, J)) of the per-ward effect on the common scale."""
    tree, _ = load_posterior(posterior)
    post = tree["posterior"]
    if "cluster_effect" not in post:
        raise QialignError(f"{posterior}: no cluster_effect draws; re-run the fit")
    ce = post["cluster_effect"]
    wards = [str(c) for c in ce["cluster"].values]
    draws = np.asarray(ce).reshape(-1, len(wards))
    if scale == "smd":
        if "sigma" not in post:
            raise QialignError(
                f"{posterior}: scale smd needs a residual SD sigma (a gaussian or lognormal fit)"
            )
        draws = draws / np.asarray(post["sigma"]).reshape(-1, 1)
    return wards, draws


def ward_alignment(path: Path, al: dict, wards: list[str]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(score, standard error, unscored wards) per ward in the trial's moderating wave; unscored
    wards get their trial's mean with UNSCORED_SE_SDS SDs of standard error."""
    scores = read_results_csv(path)
    if scores.empty:
        raise QialignError(f"{path}: no alignment scores; the synthesis regresses effects on alignment")
    try:
        wave = resolve_wave(al["wave"], file_order(scores))
    except ValueError as exc:
        raise QialignError(f"{path}: {exc}") from None
    at = scores[wave_labels(scores["wave"]) == wave].set_index("cluster")
    a = at[MODERATOR_COLUMN[al["score"]]].astype(float).reindex(wards)
    se = at["alignment_sd"].astype(float).reindex(wards).fillna(0.0)
    unscored = a[a.isna()].index.tolist()
    if len(unscored) > len(wards) - 2:
        raise QialignError(f"{path}: fewer than two wards scored in wave {wave} ({', '.join(wards)})")
    sd = float(a.std())
    se[a.isna()] = UNSCORED_SE_SDS * sd
    return a.fillna(a.mean()).to_numpy(), se.to_numpy(), unscored


def floored(S: np.ndarray, share: float = EIGEN_FLOOR) -> np.ndarray:
    """S with its eigenvalues raised to at least ``share`` x mean(diag S). A trial whose fit shrinks
    its wards' own deviations to 0 has a ward-effect posterior that is singular off its fitted line
    in the plug-in scores; used as a likelihood, that claims the wards' effects are known exactly
    off that line, and the synthesis's ward variance and slope collapse onto the artefact."""
    values, vectors = np.linalg.eigh(S)
    values = np.maximum(values, share * float(np.mean(np.diag(S))))
    return (vectors * values) @ vectors.T


def trial_input(results: Path, trial: str, pick: dict, cfg: dict, scale: str) -> TrialInput:
    """One trial's :class:`TrialInput` from its results folder."""
    files = trial_files(results, trial, pick["outcome"], pick["model"])
    for name, path in files.items():
        if not path.is_file():
            raise QialignError(f"{path}: missing ({name} of {trial}); run the trial's steps first")
    wards, draws = effect_draws(files["posterior"], scale)
    cells = read_results_csv(files["counterfactual"])
    treated = set(cells.loc[cells["treated"] == 1, "cluster"])
    keep = [i for i, w in enumerate(wards) if w in treated]
    if len(keep) < 2:
        raise QialignError(f"{files['counterfactual']}: fewer than two treated wards in {trial}")
    wards, draws = [wards[i] for i in keep], draws[:, keep]
    a, se, unscored = ward_alignment(files["scores"], cfg["alignment"], wards)
    S = floored(np.cov(draws, rowvar=False))
    return TrialInput(
        trial=trial,
        outcome=pick["outcome"],
        model=pick["model"],
        wards=wards,
        m=draws.mean(axis=0),
        S=S,
        a=a,
        se=se,
        unscored=unscored,
        record=FitRecord.read(files["record"]),
        files={k: str(v) for k, v in files.items()},
    )


def ward_table(inputs: list[TrialInput]) -> pd.DataFrame:
    """One row per ward: trial, ward, its effect's mean and SD, alignment score and SE."""
    return pd.DataFrame(
        {
            "trial": np.concatenate([[t.trial] * len(t.wards) for t in inputs]),
            "cluster": np.concatenate([t.wards for t in inputs]),
            "effect": np.concatenate([t.m for t in inputs]),
            "effect_sd": np.concatenate([np.sqrt(np.diag(t.S)) for t in inputs]),
            "alignment": np.concatenate([t.a for t in inputs]),
            "alignment_se": np.concatenate([t.se for t in inputs]),
        }
    )
