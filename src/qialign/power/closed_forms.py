"""Published closed forms for Var(theta_hat) in complete designs with categorical period effects.

Each one equals the GLS variance of :func:`qialign.power.gls.treatment_variance` for its
covariance structure (tests check 1e-10 agreement). Notation: treatment matrix X (I clusters x T
periods, complete, 0/1: the formulas use X_ij^2 = X_ij, so not for ramps), U = sum_ij X_ij,
W = sum_j (sum_i X_ij)^2, V = sum_i (sum_j X_ij)^2, m subjects per cluster-period.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "hooper_stepped_wedge_variance",
    "hussey_hughes_variance",
    "kasza_variance",
    "li_decay_variance",
]


def _uwv(treatment) -> tuple[np.ndarray, int, int, float, float, float]:
    x = np.atleast_2d(np.asarray(treatment, dtype=float))
    if np.isnan(x).any() or not np.isin(x, (0.0, 1.0)).all():
        raise ValueError("closed forms need a complete 0/1 design (no NaN cells, no ramp)")
    i, t = x.shape
    return x, i, t, x.sum(), (x.sum(axis=0) ** 2).sum(), (x.sum(axis=1) ** 2).sum()


def hussey_hughes_variance(treatment, m: float, sigma2: float, tau2: float) -> float:
    """Hussey & Hughes (2007, Contemp Clin Trials 28:182, eq. 8), cluster random intercept only.

    Var = I s2 (s2 + T tau2) / ((I U - W) s2 + (U^2 + I T U - T W - I V) tau2), s2 = sigma2 / m.
    """
    _, i, t, u, w, v = _uwv(treatment)
    s2 = sigma2 / m
    return i * s2 * (s2 + t * tau2) / ((i * u - w) * s2 + (u**2 + i * t * u - t * w - i * v) * tau2)


def kasza_variance(
    treatment,
    m: float,
    tau2: float,
    gamma2: float = 0.0,
    psi2: float = 0.0,
    sigma2: float = 1.0,
    attrition: float = 1.0,
) -> float:
    """Kasza, Hooper, Copas & Forbes (2020, Stat Med 39:1871), block exchangeable, open cohort.

    Total variance s2 = tau2 + gamma2 + psi2 + sigma2; correlations of two outcomes of a cluster:
    rW = (tau2 + gamma2)/s2 (same period), rB = tau2/s2 (different periods), rA = (tau2 + psi2)/s2
    (same subject, different periods). ``attrition`` chi: 0 closed cohort, 1 cross-sectional.

        l1 = 1 + (m-1)(rW - rB) - rA + chi (rA - rB)
        l2 = 1 + (m-1) rW + (T-1)(m-1) rB + (T-1) rA - (T-1) chi (rA - rB)
        Var = (s2/m) I T l1 l2 / ((U^2 + I T U - T W - I V) l2 - (U^2 - I V) l1)

    l1 s2/m and l2 s2/m are the eigenvalues of a cluster's covariance of period means.
    Special cases: Hussey & Hughes (gamma2 = psi2 = 0); Hooper et al. 2016 / Girling & Hemming
    2016 block exchangeable (cross-sectional: chi = 1 or psi2 = 0; closed cohort: chi = 0).
    """
    _, i, t, u, w, v = _uwv(treatment)
    s2 = tau2 + gamma2 + psi2 + sigma2
    r_w, r_b, r_a = (tau2 + gamma2) / s2, tau2 / s2, (tau2 + psi2) / s2
    churn = attrition * (r_a - r_b)
    l1 = 1 + (m - 1) * (r_w - r_b) - r_a + churn
    l2 = 1 + (m - 1) * r_w + (t - 1) * (m - 1) * r_b + (t - 1) * r_a - (t - 1) * churn
    return (s2 / m) * i * t * l1 * l2 / ((u**2 + i * t * u - t * w - i * v) * l2 - (u**2 - i * v) * l1)


def li_decay_variance(treatment, m: float, tau2: float, psi2: float, decay: float) -> float:
    """Li (2020, Stat Med 39:438), closed cohort with proportional decay.

    Cluster and subject effects both decay as r^|s-t| and there is no other residual, so a
    cluster's period means have covariance c r^|s-t|, c = s2 (1 + (m-1) rho) / m with
    s2 = tau2 + psi2, rho = tau2 / s2. With P = sum_i sum_j X_ij X_i,j+1 and
    Q = sum_j (sum_i X_ij)(sum_i X_i,j+1):

        Var = c I (1 - r^2) / ((I U - W)(1 + r^2) - 2 (I P - Q) r)

    Derived for stepped wedge designs: every cluster starts in control and switches once (it is
    not the GLS variance of parallel or before-after designs).
    """
    x, i, _, u, w, _ = _uwv(treatment)
    if not ((np.diff(x, axis=1) >= 0).all() and (x[:, 0] == 0).all() and (x[:, -1] == 1).all()):
        raise ValueError("li_decay_variance needs a stepped wedge (0 first, one switch, 1 last)")
    s2 = tau2 + psi2
    c = s2 * (1 + (m - 1) * tau2 / s2) / m
    p = (x[:, :-1] * x[:, 1:]).sum()
    col = x.sum(axis=0)
    q = (col[:-1] * col[1:]).sum()
    r = decay
    return c * i * (1 - r**2) / ((i * u - w) * (1 + r**2) - 2 * (i * p - q) * r)


def hooper_stepped_wedge_variance(
    sequences: int,
    clusters_per_sequence: float,
    m: float,
    icc: float,
    cac: float = 1.0,
    iac: float = 0.0,
    total_variance: float = 1.0,
) -> float:
    """Hooper, Teerenstra, de Hoop & Eldridge (2016, Stat Med 35:4718) standard stepped wedge.

    K sequences of c clusters, one baseline period (T = K + 1), as implemented by clusterPower's
    ``cpa.sw.normal``. Design effects: clustering DEc = 1 + (m-1) ICC; correlation of a cluster's
    period means r = (m ICC CAC + (1 - ICC) IAC) / DEc; repeated measures
    DEr = 3K (1 - r)(1 + K r) / ((K^2 - 1)(2 + K r)). Var = 4 s2 DEc DEr / (c K m).
    ``clusters_per_sequence`` may be fractional (Var is proportional to 1/c).
    """
    k = sequences
    de_c = 1 + (m - 1) * icc
    r = (m * icc * cac + (1 - icc) * iac) / de_c
    de_r = 3 * k * (1 - r) * (1 + k * r) / ((k**2 - 1) * (2 + k * r))
    return 4 * total_variance * de_c * de_r / (clusters_per_sequence * k * m)
