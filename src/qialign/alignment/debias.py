r"""De-biased descriptive alignment and the reliability of the score over wards.

The plain gap of ward j in domain d, :math:`\hat g_{jd} = \hat m_{j,clin,d} - \hat m_{j,man,d}`, is a
difference of two role means, so under sampling :math:`E[\hat g^2] = g^2 + v_{jd}` with

    v_jd = s²_{clin,d} / n_{j,clin,d} + s²_{man,d} / n_{j,man,d},

and :math:`|\hat g|` overstates misalignment most where a role has few respondents (a ward with two
managers looks misaligned by noise alone). With s² the within-ward variance of the respondents' domain
scores pooled over the wave's wards (role by domain: pooled, so a role of one respondent has one),

    |g|_jd (de-biased) = sqrt(max(ĝ_jd² - v_jd, 0)),    alignment_debiased_j = 1 - mean_d |g|_jd / 100.

Reliability of a wave's alignment score over wards (between-ward variance over total), with SE_j the
bootstrap SD of ward j's score:  R = max(0, 1 - mean_j SE_j² / var_j(alignment_j)).  An effect
modification estimated with the score plugged in (``propagation: plugin`` or ``draws``) is attenuated
towards zero by about R (regression dilution); the joint model measures alignment in the same fit.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from qialign.alignment.roles import ROLES

#: ``alignment.score`` -> the scores.csv column that moderates the effect
MODERATOR_COLUMN = {"plain": "alignment", "debiased": "alignment_debiased"}


def pooled_variances(long: pd.DataFrame) -> pd.Series:
    """s² per (wave, role, domain): within-ward sums of squares over within-ward degrees of freedom."""
    g = long.groupby(["wave", "role", "domain", "cluster"])["score"]
    parts = pd.DataFrame({"ss": g.apply(lambda x: ((x - x.mean()) ** 2).sum()), "df": g.count() - 1})
    pooled = parts.groupby(level=["wave", "role", "domain"]).sum()
    return pooled["ss"] / pooled["df"].where(pooled["df"] > 0)


def _sampling_variance(n: pd.Series, s2: pd.Series, wave, cluster, domain: str) -> float:
    """v_jd: the sampling variance of ward j's gap in domain d (NaN if a role has no answer);
    ``n`` counts answers per (wave, cluster, role, domain)."""
    counts = [n.get((wave, cluster, r, domain), 0) for r in ROLES]
    if not all(counts):
        return np.nan
    return float(sum(s2.get((wave, r, domain), np.nan) / k for r, k in zip(ROLES, counts, strict=True)))


def add_debiased(out: pd.DataFrame, long: pd.DataFrame, domains: list[str]) -> pd.DataFrame:
    """``out`` (one row per cluster x wave, with ``gap_<domain>`` and ``alignment_sd``) plus
    ``alignment_debiased`` and the wave's ``reliability``."""
    s2 = pooled_variances(long)
    n = long.groupby(["wave", "cluster", "role", "domain"])["score"].count()
    debiased = []
    for _, row in out.iterrows():
        size = []
        for d in domains:
            v = _sampling_variance(n, s2, row["wave"], row["cluster"], d)
            size.append(np.sqrt(max(row[f"gap_{d}"] ** 2 - v, 0.0)) if np.isfinite(v) else np.nan)
        debiased.append(1 - np.nanmean(size) / 100 if np.isfinite(size).any() else np.nan)
    return with_reliability(out.assign(alignment_debiased=debiased))


def with_reliability(scores: pd.DataFrame) -> pd.DataFrame:
    """``scores`` (cluster x wave rows with ``alignment`` and its ``alignment_sd``: descriptive
    bootstrap or latent posterior) plus each wave's ``reliability`` R."""
    r = scores.groupby("wave")["alignment"].transform(lambda a: _reliability(scores, a))
    return scores.assign(reliability=r)


def _reliability(out: pd.DataFrame, scores: pd.Series) -> float:
    se2 = out.loc[scores.index, "alignment_sd"] ** 2
    total = scores.var(ddof=1)
    if not np.isfinite(total) or total <= 0 or len(scores.dropna()) < 2:
        return np.nan
    return float(max(0.0, 1 - se2.mean() / total))
