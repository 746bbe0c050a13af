r"""Descriptive alignment: role domain means, clinical-managerial gaps, agreement.

For cluster j, wave w, role r and domain d, with item responses on a scale [lo, hi] (reverse items scored
lo + hi - x), a respondent's domain score is the mean of their answered items in d, and

    m_{jrd} = 100 (mean_i score_{ijrd} - lo) / (hi - lo)          (0-100 role domain mean)
    gap_{jd} = m_{j,clin,d} - m_{j,man,d}
    alignment_j = 1 - mean_d |gap_{jd}| / 100                     (1 = identical priorities)

Profile agreement is the Pearson correlation of the two roles' domain profiles; within-group agreement
is r_wg = 1 - s^2 / sigma^2_EU with sigma^2_EU = (A^2 - 1) / 12 for A scale points (James, Demaree &
Wolf 1984), truncated to [0, 1] and averaged over domains. The alignment SD and interval come from a
bootstrap of respondents within cluster x role; ``alignment_debiased`` and the wave's ``reliability``
are described in :mod:`qialign.alignment.debias`.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from qialign.alignment.debias import add_debiased
from qialign.alignment.roles import ROLES
from qialign.ids import natural_order
from qialign.results import DEFAULT_INTERVAL_PROB
from qialign.waves import ONE_WAVE, order_codes, wave_labels, wave_order


def standardise_over_clusters(values: pd.Series) -> pd.Series:
    """(x - mean) / sd over clusters (unweighted, sample SD ddof=1), as every model uses alignment."""
    sd = values.std(ddof=1)
    if not np.isfinite(sd) or sd == 0:
        raise ValueError("alignment does not vary over clusters; it cannot moderate the effect")
    return (values - values.mean()) / sd


def score_items(survey: pd.DataFrame, cfg: dict) -> pd.DataFrame:
    """Long table respondent x domain: cluster, wave (label), role (clinical|managerial), domain, score.

    Raw staff groups are mapped to roles by ``cfg['roles']``; reverse items are flipped first.
    """
    lo, hi = cfg["scale"]["min"], cfg["scale"]["max"]
    role_of = {g: r for r in ROLES for g in cfg["roles"][r]}
    items = survey.copy()
    items["role"] = items["role"].map(role_of)
    items["wave"] = wave_labels(items["wave"]) if "wave" in items else ONE_WAVE
    for item in cfg["reverse"]:
        items[item] = lo + hi - items[item]
    frames = []
    for domain, cols in cfg["domains"].items():
        score = items[cols].astype("float64").mean(axis=1, skipna=True)
        frames.append(
            pd.DataFrame(
                {
                    "respondent": items["respondent"].to_numpy(),
                    "cluster": items["cluster"].to_numpy(),
                    "wave": items["wave"].to_numpy(),
                    "role": items["role"].to_numpy(),
                    "domain": domain,
                    "score": 100 * (score.to_numpy() - lo) / (hi - lo),
                }
            )
        )
    return pd.concat(frames, ignore_index=True).dropna(subset=["score"])


def _alignment(means: np.ndarray) -> float:
    """1 - mean |clinical - managerial| / 100 from a (2, D) array of role domain means."""
    return float(1 - np.nanmean(np.abs(means[0] - means[1])) / 100)


def _rwg(scores: pd.Series, points: int) -> float:
    if len(scores) < 2:
        return np.nan
    expected = (points**2 - 1) / 12
    # scores are on 0-100; convert the variance back to scale points
    var = scores.var(ddof=1) * ((points - 1) / 100) ** 2
    return float(np.clip(1 - var / expected, 0, 1))


def descriptive_scores(
    survey: pd.DataFrame,
    cfg: dict,
    clusters: list[str],
    *,
    seed: int,
    n_boot: int = 1000,
    prob: float = DEFAULT_INTERVAL_PROB,
) -> pd.DataFrame:
    """One row per cluster x wave (waves first to last, ``wave_order`` 1 = first; see
    :mod:`qialign.waves`): role domain means, gaps, alignment with bootstrap SD and interval.

    A cluster without respondents of a role gets NaN alignment and a warning; it never raises.
    """
    long = score_items(survey, cfg)
    domains = list(cfg["domains"])
    points = cfg["scale"]["max"] - cfg["scale"]["min"] + 1
    rng = np.random.default_rng(seed)
    tail = (1 - prob) / 2
    rows = []
    waves = wave_order(long["wave"], cfg.get("waves")) or [ONE_WAVE]
    rank = order_codes(waves)
    for wave in waves:
        for cluster in clusters:
            cell = long[(long["cluster"] == cluster) & (long["wave"] == wave)]
            row: dict = {"cluster": cluster, "wave": wave, "wave_order": rank[wave]}
            wide = {
                r: cell[cell["role"] == r]
                .pivot_table(index="respondent", columns="domain", values="score")
                .pipe(lambda w: w.iloc[natural_order(w.index)].reindex(columns=domains))
                for r in ROLES  # respondents in natural order: the bootstrap rows do not hang on padding
            }
            means = np.vstack([wide[r].mean(axis=0).to_numpy() for r in ROLES])
            for i, r in enumerate(ROLES):
                row[f"n_{r}"] = len(wide[r])
                for d, m in zip(domains, means[i], strict=True):
                    row[f"{r}_{d}"] = m
            for d, g in zip(domains, means[0] - means[1], strict=True):
                row[f"gap_{d}"] = g
            missing = [r for r in ROLES if len(wide[r]) == 0]
            if missing:
                warnings.warn(
                    f"cluster {cluster} wave {wave}: no {' or '.join(missing)} respondents; "
                    "its descriptive alignment is missing",
                    stacklevel=2,
                )
                row.update(
                    alignment=np.nan,
                    alignment_sd=np.nan,
                    lower=np.nan,
                    upper=np.nan,
                    profile_r=np.nan,
                )
            else:
                row["alignment"] = _alignment(means)
                boot = np.empty(n_boot)
                arrays = [wide[r].to_numpy() for r in ROLES]
                for b in range(n_boot):
                    resampled = [a[rng.integers(0, len(a), len(a))] for a in arrays]
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", RuntimeWarning)
                        boot[b] = _alignment(np.vstack([np.nanmean(a, axis=0) for a in resampled]))
                row["alignment_sd"] = float(np.nanstd(boot, ddof=1))
                row["lower"], row["upper"] = np.nanquantile(boot, [tail, 1 - tail])
                ok = np.isfinite(means).all(axis=0)
                row["profile_r"] = (
                    float(np.corrcoef(means[0][ok], means[1][ok])[0, 1])
                    if ok.sum() > 2 and means[0][ok].std() > 0 and means[1][ok].std() > 0
                    else np.nan
                )
            for r in ROLES:
                per_domain = [
                    _rwg(cell[(cell["role"] == r) & (cell["domain"] == d)]["score"], points) for d in domains
                ]
                row[f"rwg_{r}"] = float(np.nanmean(per_domain)) if np.isfinite(per_domain).any() else np.nan
            rows.append(row)
    out = add_debiased(pd.DataFrame(rows), long, domains)
    out.insert(3, "method", "descriptive")
    return out
