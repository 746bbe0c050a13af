"""Uniformity of SBC ranks and coverage: the statistics of a calibration or power study.

Tests of uniformity: chi-square on B bins of the ranks (exact bin probabilities when B does not
divide L + 1) and the ECDF-difference test with simultaneous bands (Säilynoja, Bürkner and Vehtari
2022), calibrated by Monte Carlo under the discrete uniform. Coverage of the central interval with
a Clopper-Pearson interval; ``summarise`` gives one row per parameter (``SUMMARY_COLUMNS``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from qialign.errors import QialignError


def bin_probabilities(L: int, bins: int) -> np.ndarray:
    """Probability of each of ``bins`` rank bins under the discrete uniform on {0..L} (rank r goes
    to bin floor(r B / (L + 1)); equal when B divides L + 1)."""
    idx = (np.arange(L + 1) * bins) // (L + 1)
    return np.bincount(idx, minlength=bins) / (L + 1)


def bin_counts(ranks, L: int, bins: int) -> np.ndarray:
    ranks = np.asarray(ranks, int)
    return np.bincount((ranks * bins) // (L + 1), minlength=bins)


def chi_square_uniformity(ranks, L: int, bins: int) -> tuple[float, float]:
    """(statistic, p-value) of Pearson's chi-square test of the binned ranks against uniform."""
    ranks = np.asarray(ranks, int)
    if ((ranks < 0) | (ranks > L)).any():
        raise ValueError(f"ranks outside 0..{L}")
    obs = bin_counts(ranks, L, bins)
    exp = bin_probabilities(L, bins) * len(ranks)
    res = stats.chisquare(obs, exp)
    return float(res.statistic), float(res.pvalue)


def _ecdf_counts(ranks: np.ndarray, L: int) -> np.ndarray:
    """N F(k) for k = 0..L-1, per row of ``ranks`` (M x N) -> (M x L)."""
    M = ranks.shape[0]
    idx = ranks + (L + 1) * np.arange(M)[:, None]
    counts = np.bincount(idx.ravel(), minlength=M * (L + 1)).reshape(M, L + 1)
    return counts.cumsum(axis=1)[:, :L]


def _min_tail(counts: np.ndarray, N: int, p: np.ndarray) -> np.ndarray:
    """min over k of the two-sided pointwise binomial tail probability of N F(k) (per row)."""
    lo = stats.binom.cdf(counts, N, p)
    hi = stats.binom.sf(counts - 1, N, p)
    return np.minimum(1.0, 2 * np.minimum(lo, hi)).min(axis=-1)


@dataclass
class ECDFTest:
    p_value: float
    statistic: float  # smallest two-sided pointwise tail probability over the evaluation points
    gamma: float  # pointwise level giving simultaneous 1 - alpha bands
    z: np.ndarray  # evaluation points (k + 1) / (L + 1), k = 0..L-1
    diff: np.ndarray  # F(k) - z
    lower: np.ndarray  # simultaneous band for the difference
    upper: np.ndarray


def ecdf_uniformity(ranks, L: int, simulations: int = 10000, alpha: float = 0.05, seed: int = 0) -> ECDFTest:
    """ECDF-difference test of discrete-uniform ranks with simultaneous 1 - alpha bands.

    Under uniformity N F(k) ~ Binomial(N, (k + 1) / (L + 1)) at every k. The statistic is the
    smallest two-sided pointwise tail probability over k; its null distribution is simulated
    (``simulations`` samples of N uniform ranks), giving the p-value P(null <= observed) and the
    pointwise level gamma (alpha-quantile of the null) of the simultaneous band (Säilynoja et al. 2022).
    """
    ranks = np.asarray(ranks, int)
    N = len(ranks)
    p = (np.arange(L) + 1) / (L + 1)
    observed = float(_min_tail(_ecdf_counts(ranks[None, :], L), N, p)[0])
    rng = np.random.default_rng(seed)
    null = np.concatenate(
        [
            _min_tail(_ecdf_counts(rng.integers(0, L + 1, size=(b, N)), L), N, p)
            for b in np.diff(np.r_[0:simulations:2000, simulations])
        ]
    )
    p_value = float((1 + np.sum(null <= observed)) / (simulations + 1))
    gamma = float(np.quantile(null, alpha))
    F = _ecdf_counts(ranks[None, :], L)[0] / N
    lower = stats.binom.ppf(gamma / 2, N, p) / N - p
    upper = stats.binom.ppf(1 - gamma / 2, N, p) / N - p
    return ECDFTest(p_value, observed, gamma, p, F - p, lower, upper)


def clopper_pearson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    a = 1 - level
    lo = stats.beta.ppf(a / 2, k, n - k + 1) if k > 0 else 0.0
    hi = stats.beta.ppf(1 - a / 2, k + 1, n - k) if k < n else 1.0
    return float(lo), float(hi)


SUMMARY_COLUMNS = [
    "model",
    "parameter",
    "replicates",
    "L",
    "bins",
    "chi2",
    "chi2_p",
    "ecdf_p",
    "coverage",
    "coverage_lower",
    "coverage_upper",
    "interval",
    "mean_rank_fraction",
    "replicates_divergent",
    "divergences",
    "r_hat_max",
    "ess_bulk_min",
    "sample_s",
    "success_rate",
    "success_lower",
    "success_upper",
    "passes",
]


def passes(row: dict, cfg: dict):
    """True / False against ``cfg['criteria']``; None when the parameter is not checked."""
    crit = cfg["criteria"]
    if row["parameter"] not in crit["parameters"]:
        return None
    lo, hi = crit["coverage"]
    p_min = float(crit["uniformity_p"])
    return bool(row["chi2_p"] > p_min and row["ecdf_p"] > p_min and lo <= row["coverage"] <= hi)


def summarise(ranks: pd.DataFrame, cfg: dict) -> pd.DataFrame:
    """One row per parameter of one model (``cfg``: its flat settings; ``ranks``: its rows):
    uniformity tests, coverage (95% Clopper-Pearson), diagnostics and ``passes`` (``criteria``;
    empty for parameters not checked)."""
    L, B = int(cfg["ranks"]["draws"]), int(cfg["ranks"]["bins"])
    sims = int(cfg["ranks"]["ecdf_simulations"])
    rows = []
    for i, p in enumerate(cfg["parameters"]):
        t = ranks[ranks["parameter"] == p]
        if t.empty:
            continue
        if (t["L"] != L).any():
            raise QialignError(f"{p}: ranks out of L = {L} mixed with others; rerun the chunks")
        r = t["rank"].to_numpy(int)
        chi2, chi2_p = chi_square_uniformity(r, L, B)
        ecdf = ecdf_uniformity(r, L, sims, seed=int(cfg["seed"]) + i)
        k, n = int(t["covered"].sum()), len(t)
        lo, hi = clopper_pearson(k, n)
        pp = t["prob_positive"].to_numpy(float) if "prob_positive" in t else np.full(n, np.nan)
        wins = int((np.maximum(pp, 1 - pp) > float(cfg["success"])).sum())
        s_lo, s_hi = clopper_pearson(wins, n) if np.isfinite(pp).all() else (np.nan, np.nan)
        rows.append(
            {
                "model": cfg["name"],
                "parameter": p,
                "replicates": n,
                "L": L,
                "bins": B,
                "chi2": chi2,
                "chi2_p": chi2_p,
                "ecdf_p": ecdf.p_value,
                "coverage": k / n,
                "coverage_lower": lo,
                "coverage_upper": hi,
                "interval": float(cfg["interval"]),
                "mean_rank_fraction": float(r.mean() / L),
                "replicates_divergent": int((t["divergences"] > 0).sum()),
                "divergences": int(t["divergences"].sum()),
                "r_hat_max": float(t["r_hat_max"].max()),
                "ess_bulk_min": float(t["ess_bulk_min"].min()),
                "sample_s": float(t["sample_s"].sum()),
                "success_rate": wins / n if np.isfinite(pp).all() else np.nan,
                "success_lower": s_lo,
                "success_upper": s_hi,
            }
        )
        rows[-1]["passes"] = passes(rows[-1], cfg)
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def summarise_study(ranks: pd.DataFrame, cfg: dict) -> pd.DataFrame:
    """``summarise`` for every model of a study (``cfg``: ``sbc_config``) that has rows."""
    parts = [
        summarise(ranks[ranks["model"] == name], model_cfg)
        for name, model_cfg in cfg["models"].items()
        if (ranks["model"] == name).any()
    ]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=SUMMARY_COLUMNS)
