"""Variance of the treatment effect (and of a treatment x moderator interaction) by GLS.

Data are cluster-period means ``ybar_ij`` (cluster i, period j) of a linear mixed model on
the identity scale (Hussey & Hughes 2007):

    ybar_ij = beta_j + theta X_ij + u_ij

``beta_j`` categorical period effects, ``X_ij`` the treatment (0/1, a fraction for a ramp), NaN
for a cell that is not observed (incomplete designs). Clusters are independent; within cluster i,
with m the number of subjects per cluster-period,

    Cov(ybar_is, ybar_it) = tau2 rc^|s-t| + gamma2 [s=t] + psi2 rs^|s-t| / m + sigma2 [s=t] / m

- ``tau2`` cluster effect: exchangeable over periods (rc = 1, Hussey & Hughes) or decaying
  (rc < 1, discrete-time exponential decay, Kasza et al. 2019);
- ``gamma2`` cluster-period effect: block exchangeable / nested exchangeable (Hooper et al.
  2016; Girling & Hemming 2016);
- ``psi2`` subject effect of a closed cohort (the same m subjects every period), exchangeable
  (rs = 1, Hooper et al. 2016) or decaying (rs < 1, Li 2020 proportional decay); 0 for
  cross-sectional sampling;
- ``sigma2`` residual.

With Z_i the fixed-effect rows of cluster i's observed cells and V_i their covariance,
``Var(theta_hat) = [(sum_i Z_i' V_i^-1 Z_i)^-1]_theta``. Correlation parametrisation (Hooper et
al. 2016), total variance s2 = tau2 + gamma2 + psi2 + sigma2: ICC = (tau2 + gamma2) / s2,
CAC = tau2 / (tau2 + gamma2), IAC = psi2 / (psi2 + sigma2).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import special  # the functions behind scipy.stats.norm / t, without its import cost

__all__ = [
    "VarianceComponents",
    "binary_variance",
    "cluster_covariance",
    "incomplete_window",
    "interaction_variance",
    "normal_scores",
    "parallel",
    "parallel_baseline",
    "power",
    "stepped_wedge",
    "treatment_variance",
]


@dataclass(frozen=True)
class VarianceComponents:
    """Variance components of one subject's outcome (see the module docstring).

    ``cluster_decay`` (rc) and ``individual_decay`` (rs) are the lag-1 correlations of the
    cluster and subject effects; 1 means exchangeable over periods.
    """

    tau2: float
    gamma2: float = 0.0
    psi2: float = 0.0
    sigma2: float = 1.0
    cluster_decay: float = 1.0
    individual_decay: float = 1.0

    def __post_init__(self):
        for name in ("tau2", "gamma2", "psi2", "sigma2"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("cluster_decay", "individual_decay"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")

    @classmethod
    def from_correlations(
        cls,
        icc: float,
        cac: float = 1.0,
        iac: float = 0.0,
        total_variance: float = 1.0,
        cluster_decay: float = 1.0,
        individual_decay: float = 1.0,
    ) -> VarianceComponents:
        """Components from ICC, CAC, IAC and the total variance s2 (Hooper et al. 2016).

        tau2 = s2 ICC CAC, gamma2 = s2 ICC (1 - CAC), psi2 = s2 (1 - ICC) IAC,
        sigma2 = s2 (1 - ICC)(1 - IAC). CAC = 1 and IAC = 0 is Hussey & Hughes; with
        ``cluster_decay`` r (and CAC = 1) the correlation of two subjects of a cluster in periods
        s and t is ICC r^|s-t| (Kasza et al. 2019 exponential decay).
        """
        for name, value in (("icc", icc), ("cac", cac), ("iac", iac)):
            if not 0 <= value <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        s2 = float(total_variance)
        return cls(
            tau2=s2 * icc * cac,
            gamma2=s2 * icc * (1 - cac),
            psi2=s2 * (1 - icc) * iac,
            sigma2=s2 * (1 - icc) * (1 - iac),
            cluster_decay=cluster_decay,
            individual_decay=individual_decay,
        )

    @property
    def total(self) -> float:
        return self.tau2 + self.gamma2 + self.psi2 + self.sigma2


def binary_variance(p0: float, p1: float | None = None) -> float:
    """Bernoulli variance p(1 - p) used as total variance for a binary outcome.

    ``p = p0`` (baseline prevalence), or ``p = (p0 + p1) / 2`` when ``p1`` is given
    (swCRTdesign ``swPwr`` convention for ``distn="binomial"``).
    """
    p = p0 if p1 is None else (p0 + p1) / 2
    if not 0 < p < 1:
        raise ValueError(f"prevalence must be in (0, 1), got {p}")
    return p * (1 - p)


# ---------------------------------------------------------------- designs (clusters x periods)


def _counts(spec: int | Sequence[int], groups: int) -> list[int]:
    counts = [int(spec)] * groups if np.ndim(spec) == 0 else [int(c) for c in spec]
    if len(counts) != groups:
        raise ValueError(f"expected {groups} cluster counts, got {len(counts)}")
    return counts


def _rows(counts: Sequence[int], patterns: Sequence[np.ndarray]) -> np.ndarray:
    rows = [np.tile(p, (c, 1)) for c, p in zip(counts, patterns, strict=True) if c > 0]
    return np.vstack(rows).astype(float)


def stepped_wedge(
    sequences: int | Sequence[int],
    clusters_per_sequence: int = 1,
    *,
    baseline_periods: int = 1,
    extra_periods: int = 0,
    ramp: Sequence[float] = (),
) -> np.ndarray:
    """Stepped wedge: sequence k (0-based) switches to treatment at period baseline_periods + k.

    ``sequences`` is the number of sequences (each with ``clusters_per_sequence`` clusters) or a
    list of clusters per sequence (0 for an empty step, as SteppedPower's ``Cl``). Periods:
    ``baseline_periods + len(sequences) + extra_periods``. ``ramp`` gives the treatment of the
    first periods after the switch (e.g. ``(0.5,)``; NaN = transition period not observed).
    """
    if np.ndim(sequences) == 0:
        counts = [int(clusters_per_sequence)] * int(sequences)
    else:
        counts = [int(c) for c in sequences]
    n_seq = len(counts)
    periods = baseline_periods + n_seq + extra_periods
    patterns = []
    for k in range(n_seq):
        row = np.zeros(periods)
        start = baseline_periods + k
        row[start:] = 1.0
        for lag, value in enumerate(ramp):
            if start + lag < periods:
                row[start + lag] = value
        patterns.append(row)
    return _rows(counts, patterns)


def parallel(clusters_per_arm: int | Sequence[int], periods: int = 1) -> np.ndarray:
    """Parallel design: control arm then treated arm, every period (``(n0, n1)`` or n per arm)."""
    counts = _counts(clusters_per_arm, 2)
    return _rows(counts, [np.zeros(periods), np.ones(periods)])


def parallel_baseline(
    clusters_per_arm: int | Sequence[int], baseline_periods: int = 1, periods: int = 1
) -> np.ndarray:
    """Parallel with baseline (controlled before-after): all control for ``baseline_periods``,
    then ``periods`` periods with the second arm treated."""
    counts = _counts(clusters_per_arm, 2)
    treated = np.r_[np.zeros(baseline_periods), np.ones(periods)]
    return _rows(counts, [np.zeros(baseline_periods + periods), treated])


def incomplete_window(treatment: np.ndarray, before: int, after: int) -> np.ndarray:
    """Set cells outside ``before`` periods before and ``after`` periods from each cluster's switch
    to NaN (SteppedPower ``incomplete = k`` is ``before = after = k``). Clusters that never
    switch keep every period."""
    out = np.array(treatment, dtype=float)
    for row in out:
        switched = np.flatnonzero(np.isnan(row) | (row != 0))
        if switched.size == 0:
            continue
        s = switched[0]
        keep = np.zeros(row.size, bool)
        keep[max(s - before, 0) : s + after] = True
        row[~keep] = np.nan
    return out


# ---------------------------------------------------------------------------- GLS machinery


def _as_cells(values, shape: tuple[int, int], name: str) -> np.ndarray:
    """Scalar, per-cluster vector or clusters x periods matrix -> clusters x periods array."""
    arr = np.asarray(values, dtype=float)
    if arr.ndim == 1 and arr.size == shape[0]:
        arr = arr[:, None]
    try:
        return np.broadcast_to(arr, shape)
    except ValueError:
        raise ValueError(f"{name} of shape {arr.shape} does not fit the design {shape}") from None


def cluster_covariance(vc: VarianceComponents, m) -> np.ndarray:
    """Covariance matrix of one cluster's period means (module docstring); ``m`` per period."""
    m = np.asarray(m, dtype=float)
    lag = np.abs(np.subtract.outer(np.arange(m.size), np.arange(m.size)))
    cov = vc.tau2 * vc.cluster_decay**lag + np.diag(vc.gamma2 + vc.sigma2 / m)
    if vc.psi2 > 0:
        if np.ptp(m) > 0:
            raise ValueError("a closed cohort (psi2 > 0) needs the same m in every observed period")
        cov = cov + vc.psi2 * vc.individual_decay**lag / m[0]
    return cov


def _information(treatment: np.ndarray, m, vc: VarianceComponents, x=None) -> np.ndarray:
    """sum_i Z_i' V_i^-1 Z_i; columns: period effects, treatment [, x, treatment * x].

    Clusters with the same pattern (treatment, m, x) are computed once and weighted.
    """
    treatment = np.atleast_2d(np.asarray(treatment, dtype=float))
    n, periods = treatment.shape
    m = _as_cells(m, treatment.shape, "m")
    xs = None if x is None else np.broadcast_to(np.asarray(x, dtype=float), (n,))
    groups: dict[tuple, list] = {}
    for i in range(n):
        key = (treatment[i].tobytes(), m[i].tobytes(), None if xs is None else xs[i])
        groups.setdefault(key, [i, 0])[1] += 1
    p = periods + (1 if xs is None else 3)
    info = np.zeros((p, p))
    for i, count in groups.values():
        obs = ~np.isnan(treatment[i])
        if not obs.any():
            continue
        t = treatment[i, obs]
        cols = [np.eye(periods)[obs], t[:, None]]
        if xs is not None:
            cols += [np.full((t.size, 1), xs[i]), (t * xs[i])[:, None]]
        z = np.hstack(cols)
        v = cluster_covariance(vc, m[i, obs])
        info += count * z.T @ np.linalg.solve(v, z)
    return info


def _target_variance(info: np.ndarray, target: int) -> float:
    """Variance of coefficient ``target`` from an information matrix (Schur complement).

    Parameters with no information (periods nobody observes) are dropped; a generalised
    inverse of the nuisance block keeps estimable targets exact. Returns inf if the target is not
    estimable (e.g. treatment confounded with period).
    """
    keep = np.flatnonzero(np.diag(info) > 0)
    if target not in keep:
        return np.inf
    info = info[np.ix_(keep, keep)]
    t = int(np.flatnonzero(keep == target)[0])
    scale = 1 / np.sqrt(np.diag(info))
    info = info * np.outer(scale, scale)  # unit diagonal: rank decisions are scale free
    rest = np.delete(np.arange(info.shape[0]), t)
    b = info[rest, t]
    schur = info[t, t] - b @ np.linalg.pinv(info[np.ix_(rest, rest)], hermitian=True) @ b
    if schur <= 1e-10:
        return np.inf
    return float(scale[t] ** 2 / schur)


def treatment_variance(treatment: np.ndarray, m, vc: VarianceComponents) -> float:
    """GLS variance of the treatment effect theta for any design.

    ``treatment``: clusters x periods, 0/1 (fractional for a ramp), NaN = not observed.
    ``m``: subjects per cluster-period (scalar, per cluster, or clusters x periods).
    """
    periods = np.atleast_2d(treatment).shape[1]
    return _target_variance(_information(treatment, m, vc), periods)


def normal_scores(n: int) -> np.ndarray:
    """Grid of N(0, 1) quantiles Phi^-1((k - 1/2) / n), k = 1..n, rescaled to mean 0, SD 1."""
    z = special.ndtri((np.arange(1, n + 1) - 0.5) / n)
    return (z - z.mean()) / z.std() if n > 1 else np.zeros(1)


def interaction_variance(treatment: np.ndarray, m, vc: VarianceComponents, x=None) -> float:
    """GLS variance of gamma, the treatment x moderator interaction (per SD of x).

    Model: ybar_ij = beta_j + theta X_ij + a x_i + gamma X_ij x_i + u_ij, with x_i a
    cluster-level moderator (e.g. standardised alignment) entering as a fixed covariate; the
    cluster random effects are as for :func:`treatment_variance` (they do not absorb a x_i).

    ``x`` given: exact GLS, Var(gamma_hat) = [(sum_i Z_i' V_i^-1 Z_i)^-1]_gamma with rows
    Z_ij = (e_j, X_ij, x_i, X_ij x_i).

    ``x=None``: x standardised (mean 0, SD 1) and balanced within every group of clusters that
    share a treatment pattern (x independent of the allocation, e.g. :func:`normal_scores` within
    each sequence). Then the information between (beta, theta) and (a, gamma) vanishes
    (sum of x_i over each group is 0) and

        Var(gamma_hat) = [(sum_i B_i' V_i^-1 B_i)^-1]_22,  B_i = [1, X_i],

    the treatment variance of a model with one intercept and no period effects: the moderator
    is compared within clusters over time and between clusters of a sequence. With x of SD s,
    divide by s^2.
    """
    treatment = np.atleast_2d(np.asarray(treatment, dtype=float))
    periods = treatment.shape[1]
    if x is not None:
        return _target_variance(_information(treatment, m, vc, x), periods + 2)
    # B_i = [1, X_i] is Z_i with all period columns summed: collapse the information.
    info = _information(treatment, m, vc)
    collapse = np.zeros((periods + 1, 2))
    collapse[:periods, 0] = 1
    collapse[periods, 1] = 1
    return _target_variance(collapse.T @ info @ collapse, 1)


def power(
    effect: float,
    se: float,
    alpha: float = 0.05,
    df: float | None = None,
    opposite_tail: bool = True,
) -> float:
    """Two-sided power of a Wald test: Phi(|effect|/se - z_{1-alpha/2}) [+ Phi(-|effect|/se - z)].

    ``df=None``: normal (Hussey & Hughes 2007). ``df``: central t quantiles and probabilities (a
    scaled Wald test, SteppedPower ``tTestPwr``). ``opposite_tail`` adds the rejection
    probability in the wrong direction (swCRTdesign and SteppedPower do; Hussey & Hughes's formula
    and clusterPower's ``cpa.sw.normal`` do not).
    """
    z = abs(effect) / se  # se = inf (not estimable): power = size
    if df is None:
        q, cdf = special.ndtri(1 - alpha / 2), special.ndtr
    else:
        q, cdf = special.stdtrit(df, 1 - alpha / 2), lambda v: special.stdtr(df, v)
    out = cdf(z - q)
    if opposite_tail:
        out += cdf(-z - q)
    return float(out)
