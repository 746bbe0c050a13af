"""Individual-level GEE with exchangeable / nested-exchangeable working correlation, on rows
or on cell means.

A small numpy implementation of the GEE of geeCRT's ``geemaee`` (Yu, Li, Rathouz, Turner,
Preisser; ``alpadj = FALSE``, ``makevone = FALSE``), written because statsmodels cannot reproduce
geeCRT's nested-exchangeable estimates: statsmodels' ``Nested`` structure parameterises variance
components (not the within-period / between-period correlations alpha0, alpha1) and its
``Exchangeable`` uses a different (ddof-adjusted, unweighted) moment estimator.

Model for cluster i (rows j = 1..n_i, period t_j), link g, variance function v, weights w:

    g(mu_ij) = x_ij' beta + offset_ij
    V_i = phi * S_i R_i(alpha) S_i,   S_i = diag(sqrt(v(mu_ij) / w_ij))
    corr(y_ij, y_ik) = alpha0 if t_j == t_k else alpha1      (nested exchangeable)
                     = alpha0                                  (exchangeable)

Estimating equations (Prentice 1988; Li, Turner & Preisser 2018):

    sum_i D_i' V_i^{-1} (y_i - mu_i) = 0
    sum_i Z_i' W_i (e_ij e_ik - Z_i alpha) = 0,     e_ij = (y_ij - mu_ij) / sqrt(phi v_ij / w_ij)

where Z_i indicates, per pair j < k, which alpha applies and W_i = diag(1/VEE_jk) with the
working variance of the pairwise product: VEE = 1 + gamma^2 (gaussian), the Bernoulli formula
1 + (1-2mu_j)(1-2mu_k) gamma / sqrt(v_j v_k) - gamma^2 (binomial), and 1 (poisson/quasi-Poisson,
as geeCRT's ``makevone = TRUE``). Both are solved jointly by Fisher scoring with a
block-diagonal information matrix, exactly as geeCRT. The dispersion phi is 1 for binomial; for
gaussian it is geeCRT's moment estimator sum_i r_i' B_i (B_i - D_i Omega D_i')^{-1} r_i / (N - p)
(updated after every step); for poisson it is the Pearson statistic / (N - p).

Cells (``mult``): an observation may be the mean of m individuals who share x, offset and weight,
with within-cell sum of squares ss = sum (y_ik - ybar)^2. The working correlation stays defined on
individuals, so the cell mean has V = phi S (c M^{-1} + U G U') S with M = diag(m), the pair sums
use sum_k e_k = m ebar and sum_k e_k^2 = m ebar^2 + ss / sd^2, and N = sum m: the estimating
equations, alphas, dispersion and all sandwiches are exactly those of the individual rows (for
binomial cells ss = m p (1 - p) is implied by the proportion p; gaussian cells need the SD).

Cost: V_i^{-1} uses the low-rank structure R = c I + U G U' (Woodbury), the pair sums use
per-period totals (gaussian/poisson) or distinct row types (binomial), and the bias-corrected
sandwiches need only p x p pieces, so nothing is O(n_i^3). About 11,000 rows in 7 clusters fit in
< 1 s; binomial with an individual-level continuous covariate (n_i^2 pair types) takes ~10 s.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.special import expit

from qialign.families import GLM_FAMILIES
from qialign.ids import natural_codes

from .sandwich import SANDWICH_KINDS, sandwich_from_scores

__all__ = ["GEEResult", "fit_gee", "GEE_FAMILIES", "CORSTRS"]

GEE_FAMILIES = GLM_FAMILIES  # working families
CORSTRS = ("independence", "exchangeable", "nested_exchangeable")

ALPHA_NAMES = {
    "independence": [],
    "exchangeable": ["alpha"],
    "nested_exchangeable": ["alpha0_within_period", "alpha1_between_period"],
}

#: geeCRT's step-shrinking limit for range violations.
_MAX_SHRINK = 20


@dataclass
class GEEResult:
    """Fitted GEE: coefficients, correlation parameters and five covariance matrices.

    ``cov`` maps ``model``/``robust``/``kc``/``md``/``fg`` (MB, BC0..BC3) to p x p matrices.
    ``df`` = clusters - p (the t reference distribution of Li et al. 2018). ``note`` is empty
    for a clean fit and says why otherwise; numerical failure never raises.
    """

    params: pd.Series
    cov: dict[str, pd.DataFrame]
    alpha: pd.Series
    scale: float
    n_clusters: int
    n_obs: int
    n_iter: int
    converged: bool
    note: str = ""
    family: str = "gaussian"
    corstr: str = "exchangeable"
    extra: dict = field(default_factory=dict)

    @property
    def df(self) -> int:
        return self.n_clusters - len(self.params)

    def se(self, kind: str = "robust") -> pd.Series:
        """Standard errors from covariance ``kind`` (one of ``SANDWICH_KINDS``)."""
        c = self.cov[kind]
        return pd.Series(np.sqrt(np.clip(np.diag(c.to_numpy()), 0, None)), index=c.index)


# ----------------------------------------------------------------------------- family pieces
def _mean(family: str, eta: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return mu, dmu/deta and v(mu)."""
    if family == "gaussian":
        return eta, np.ones_like(eta), np.ones_like(eta)
    if family == "binomial":
        mu = expit(eta)
        v = mu * (1 - mu)
        return mu, v, v
    mu = np.exp(np.clip(eta, -700, 700))
    return mu, mu, mu


def _vee(family: str, a: np.ndarray, gam: np.ndarray) -> np.ndarray:
    """Working variance of e_j e_k for pair types (see module docstring); a = (1-2mu)/sqrt(v)."""
    if family == "binomial":
        return 1 + np.outer(a, a) * gam - gam**2
    if family == "gaussian":
        return 1 + gam**2
    return np.ones_like(gam)


def _out_of_range(family: str, mu: np.ndarray, gam: np.ndarray, pair: np.ndarray) -> bool:
    """Prentice (1988) range check of the pairwise correlations (geeCRT's RANGE CHECKS)."""
    if family != "binomial":
        return bool(np.any(np.abs(gam[pair]) >= 1))
    odds = mu / (1 - mu)
    r = np.sqrt(np.outer(odds, 1 / odds))
    upper = np.minimum(r, 1 / r)
    s = np.sqrt(np.outer(odds, odds))
    lower = np.maximum(-s, -1 / s)
    return bool(np.any((gam >= upper)[pair] | (gam <= lower)[pair]))


@dataclass
class _Cl:
    X: np.ndarray
    y: np.ndarray
    off: np.ndarray
    w: np.ndarray
    pidx: np.ndarray  # period index within the cluster, 0..T_i-1
    U: np.ndarray  # n x m low-rank part of R: [period indicators, 1] / [1] / none
    UtU: np.ndarray  # U' M U
    m: np.ndarray  # individuals per observation (1 for rows)
    ss: np.ndarray  # within-observation sum of squares of y (0 for rows)


def _corr_parts(corstr: str, alpha: np.ndarray, T: int) -> tuple[float, np.ndarray]:
    """R = c I + U diag(g) U' (nested: c = 1 - a0, g = (a0 - a1) per period and a1)."""
    if corstr == "independence":
        return 1.0, np.zeros(0)
    if corstr == "exchangeable":
        return 1.0 - alpha[0], np.array([alpha[0]])
    return 1.0 - alpha[0], np.r_[np.full(T, alpha[0] - alpha[1]), alpha[1]]


class _Work:
    """Working covariance V = diag(sd) R diag(sd) of one cluster with an O(n m^2) solve.

    R = C + UGU' with C = c M^{-1} (M = diag(mult); c I for rows). Woodbury with a possibly
    singular G: R^{-1} x = C^{-1} x - C^{-1} U G (I + U'C^{-1}U G)^{-1} U'C^{-1} x.
    """

    def __init__(self, c: _Cl, sd: np.ndarray, corstr: str, alpha: np.ndarray):
        self.c, self.sd = c, sd
        self.cc, self.g = _corr_parts(corstr, alpha, c.U.shape[1] - 1)
        if self.cc <= 0:
            raise np.linalg.LinAlgError("working correlation is not positive definite")
        k = len(self.g)
        self.cinv = c.m / self.cc
        self.small = (np.eye(k) + c.UtU / self.cc * self.g[None, :]) if k else None

    def rinv(self, x: np.ndarray) -> np.ndarray:
        xs = x * (self.cinv if x.ndim == 1 else self.cinv[:, None])
        if self.small is None:
            return xs
        Ux = self.c.U.T @ xs
        corr = self.c.U @ (self.g[:, None] * np.linalg.solve(self.small, Ux.reshape(len(self.g), -1)))
        corr = corr.reshape(x.shape)
        return xs - corr * (self.cinv if x.ndim == 1 else self.cinv[:, None])

    def solve(self, x: np.ndarray) -> np.ndarray:
        """V^{-1} x for a vector or n x k matrix."""
        sd = self.sd if x.ndim == 1 else self.sd[:, None]
        return self.rinv(x / sd) / sd


def _pair_sums(family, c: _Cl, corstr, mu, v, e, alpha, sd):
    """Per correlation group g: sum over individual pairs j<k of (e_j e_k - gamma_g)/VEE_jk and
    of 1/VEE_jk.

    Per observation, s1 = sum_k e_k = m e and s2 = sum_k e_k^2 = m e^2 + ss / sd^2 (rows: e, e^2).
    Binomial: observations with the same (period, mu, w) share a and VEE, so the pairs are summed
    over these types from their s1, s2 and m (exact; O(types^2)); gaussian/poisson: closed forms.
    """
    q = len(alpha)
    s1 = c.m * e
    s2 = c.m * e**2 + c.ss / sd**2
    if family != "binomial":
        tot = s1.sum()
        s_all = (tot**2 - np.sum(s2)) / 2
        n = c.m.sum()
        p_all = n * (n - 1) / 2
        if corstr == "exchangeable":
            S, P = np.array([s_all]), np.array([p_all])
        else:
            per_sum = np.bincount(c.pidx, weights=s1)
            per_sq = np.bincount(c.pidx, weights=s2)
            per_n = np.bincount(c.pidx, weights=c.m)
            s_w = np.sum(per_sum**2 - per_sq) / 2
            p_w = np.sum(per_n * (per_n - 1)) / 2
            S, P = np.array([s_w, s_all - s_w]), np.array([p_w, p_all - p_w])
        vee = 1 + alpha**2 if family == "gaussian" else np.ones(q)
        return (S - alpha * P) / vee, P / vee, False
    keys = np.column_stack([c.pidx, mu, c.w])
    uniq, inv = np.unique(keys, axis=0, return_inverse=True)
    inv = inv.ravel()
    t1 = np.bincount(inv, weights=s1, minlength=len(uniq))
    t2 = np.bincount(inv, weights=s2, minlength=len(uniq))
    cnt = np.bincount(inv, weights=c.m, minlength=len(uniq))
    mut = uniq[:, 1]
    at = (1 - 2 * mut) / np.sqrt(mut * (1 - mut))
    if corstr == "exchangeable":
        grp = np.zeros((len(uniq), len(uniq)), dtype=int)
    else:
        grp = np.where(uniq[:, 0][:, None] == uniq[:, 0][None, :], 0, 1)
    gam = alpha[grp]
    cc = np.outer(cnt, cnt) - np.diag(cnt)  # ordered pairs of distinct individuals between types
    violated = _out_of_range(family, mut, gam, cc > 0)
    vee = _vee(family, at, gam)
    f = (np.outer(t1, t1) - np.diag(t2) - cc * gam) / vee
    h = cc / vee
    U_a = np.array([f[grp == g].sum() / 2 for g in range(q)])
    I_a = np.array([h[grp == g].sum() / 2 for g in range(q)])
    return U_a, I_a, violated


def _init_beta(family, X, y, off, w):
    """Starting values as geeCRT: OLS (gaussian), OLS on 2y-1 + two Newton steps (binomial);
    poisson: OLS on log(y + 0.5) - offset + six Newton steps. ``w``: weight x multiplicity."""
    sw = np.sqrt(w)
    if family == "gaussian":
        return np.linalg.lstsq(X * sw[:, None], (y - off) * sw, rcond=None)[0]
    if family == "binomial":
        beta = np.linalg.lstsq(X * sw[:, None], (2 * y - 1) * sw, rcond=None)[0]
        steps = 2
    else:
        z = np.log(y + 0.5) - off
        beta = np.linalg.lstsq(X * sw[:, None], z * sw, rcond=None)[0]
        steps = 6
    for _ in range(steps):
        mu, dmu, v = _mean(family, X @ beta + off)
        W = w * dmu**2 / v
        beta = beta + np.linalg.solve(X.T @ (X * W[:, None]), X.T @ (w * dmu / v * (y - mu)))
    return beta


def _pieces(family, c: _Cl, beta, alpha, phi, corstr):
    mu, dmu, v = _mean(family, c.X @ beta + c.off)
    sd = np.sqrt(phi * v / c.w)
    work = _Work(c, sd, corstr, alpha)
    D = c.X * dmu[:, None]
    r = c.y - mu
    VinvD = work.solve(D)
    return mu, v, sd, D, r, VinvD


def fit_gee(
    y,
    X,
    cluster,
    *,
    family: str = "gaussian",
    corstr: str = "nested_exchangeable",
    period=None,
    offset=None,
    weights=None,
    mult=None,
    ss=None,
    maxiter: int = 500,
    tol: float = 1e-6,
) -> GEEResult:
    """Fit a marginal model by GEE and return estimates with MB, BC0, BC1, BC2, BC3 covariances.

    ``y``: outcome (binomial: 0/1); ``X``: design matrix (DataFrame keeps column names; the
    caller chooses intercept/period coding); ``cluster``: cluster labels; ``period``: needed for
    ``corstr="nested_exchangeable"``; ``offset``: added to the linear predictor (log exposure);
    ``weights``: prior weights (variance phi v(mu)/w); ``mult``: individuals per observation (``y``
    is then their mean, see the module docstring) and ``ss`` their within-observation sum of
    squares (default 0; binomial m p (1 - p)). Convergence as geeCRT: stop when the
    largest Fisher-scoring step in (beta, alpha) is <= ``tol`` (geeCRT's ``epsilon``; its
    default 1e-3 reproduces the vignette to the printed digits). A correlation parameter with no
    pairs (e.g. one row per cluster-period) is fixed at 0 and named in ``note``.
    """
    names = list(X.columns) if isinstance(X, pd.DataFrame) else [f"x{k}" for k in range(np.shape(X)[1])]
    Xa, ya, cl, per, off, w, mm, sq = _inputs(
        X, y, cluster, family, corstr, period, offset, weights, mult, ss
    )
    n_obs, p = Xa.shape
    alpha_names = ALPHA_NAMES[corstr]
    q = len(alpha_names)

    clusters, npairs = _clusters(corstr, Xa, ya, cl, per, off, w, mm, sq)
    K = len(clusters)
    active = npairs > 0
    notes = [f"{alpha_names[g]} has no pairs; fixed at 0" for g in range(q) if not active[g]]

    common = {"n_clusters": K, "n_obs": n_obs, "family": family, "corstr": corstr}
    nan_cov = {k: np.full((p, p), np.nan) for k in SANDWICH_KINDS}
    result_nan = _result(names, alpha_names, nan_cov, np.full(p, np.nan), np.full(q, np.nan), np.nan, common)
    if np.linalg.matrix_rank(Xa) < p:
        result_nan.note = "design matrix is rank deficient"
        return result_nan

    with np.errstate(all="raise"):
        try:
            fit = _fisher_scoring(
                family, corstr, clusters, Xa, ya, off, w, mm, sq, p, q, active, maxiter, tol
            )
        except (np.linalg.LinAlgError, FloatingPointError, ValueError) as exc:
            result_nan.note = f"GEE failed: {exc}"
            return result_nan
    beta, alpha, phi, n_iter, converged, fit_notes = fit
    notes += fit_notes
    if not converged:
        notes.append(f"GEE did not converge in {maxiter} iterations")
    try:
        covs = _covariances(family, corstr, clusters, beta, alpha, phi)
    except (np.linalg.LinAlgError, FloatingPointError) as exc:
        result_nan.note = f"sandwich failed: {exc}"
        return result_nan
    if min(np.min(np.diag(cv)) for cv in covs.values()) <= 0:
        notes.append("a covariance estimate is not positive definite")
    res = _result(names, alpha_names, covs, beta, alpha, phi, common, n_iter, converged, "; ".join(notes))
    if not converged:
        res.params[:] = np.nan
        for v in res.cov.values():
            v.iloc[:, :] = np.nan
    return res


def _result(names, alpha_names, covs, beta, alpha, phi, common, n_iter=0, converged=False, note=""):
    return GEEResult(
        params=pd.Series(beta, index=names),
        cov={k: pd.DataFrame(v, index=names, columns=names) for k, v in covs.items()},
        alpha=pd.Series(alpha, index=alpha_names, dtype=float),
        scale=float(phi),
        **common,
        n_iter=n_iter,
        converged=converged,
        note=note,
    )


def _inputs(X, y, cluster, family, corstr, period, offset, weights, mult, ss):
    """Checked arrays for :func:`fit_gee` (defaults: period 0, offset 0, weight 1, mult 1, ss)."""
    if family not in GEE_FAMILIES:
        raise ValueError(f"family must be one of {GEE_FAMILIES}, got {family!r}")
    if corstr not in CORSTRS:
        raise ValueError(f"corstr must be one of {CORSTRS}, got {corstr!r}")
    if corstr == "nested_exchangeable" and period is None:
        raise ValueError("corstr='nested_exchangeable' needs period")
    Xa = np.asarray(X, dtype=float)
    ya = np.asarray(y, dtype=float)
    n = len(ya)
    per = np.zeros(n) if period is None else np.asarray(period)
    off = np.zeros(n) if offset is None else np.asarray(offset, dtype=float)
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=float)
    mm = np.ones(n) if mult is None else np.asarray(mult, dtype=float)
    if family == "binomial" and np.any((ya < 0) | (ya > 1)):
        raise ValueError("binomial GEE needs y in [0, 1] (0/1 rows or proportions of cells)")
    if np.any(mm < 1):
        raise ValueError("mult (individuals per observation) must be >= 1")
    if ss is not None:
        sq = np.asarray(ss, dtype=float)
    else:
        sq = mm * ya * (1 - ya) if family == "binomial" else np.zeros(n)
    return Xa, ya, np.asarray(cluster), per, off, w, mm, sq


def _clusters(corstr, Xa, ya, cl, per, off, w, mm, sq) -> tuple[list[_Cl], np.ndarray]:
    """Per-cluster pieces and the number of individual pairs per correlation parameter."""
    clusters = []
    labels, inv = np.unique(natural_codes(cl), return_inverse=True)  # clusters in the one order of ids
    for k in range(len(labels)):
        idx = np.flatnonzero(inv == k)
        _, pidx = np.unique(per[idx], return_inverse=True)
        pidx = pidx.ravel()
        n, T = len(idx), int(pidx.max()) + 1
        if corstr == "independence":
            U = np.zeros((n, 0))
        elif corstr == "exchangeable":
            U = np.ones((n, 1))
        else:
            U = np.column_stack([(pidx[:, None] == np.arange(T)[None, :]).astype(float), np.ones(n)])
        mi = mm[idx]
        clusters.append(
            _Cl(Xa[idx], ya[idx], off[idx], w[idx], pidx, U, U.T @ (mi[:, None] * U), mi, sq[idx])
        )
    sizes = [np.bincount(c.pidx, weights=c.m) for c in clusters]
    n_within = sum(float(np.sum(z * (z - 1)) / 2) for z in sizes)
    n_all = sum(float(z.sum() * (z.sum() - 1) / 2) for z in sizes)
    npairs = {
        "independence": np.zeros(0),
        "exchangeable": np.array([n_all]),
        "nested_exchangeable": np.array([n_within, n_all - n_within]),
    }[corstr]
    return clusters, npairs


def _covariances(family, corstr, clusters, beta, alpha, phi) -> dict[str, np.ndarray]:
    """MB and BC0-BC3 covariances from the per-cluster information and scores at the solution."""
    info, score = [], []
    for c in clusters:
        _, _, _, D, r, VinvD = _pieces(family, c, beta, alpha, phi, corstr)
        info.append(D.T @ VinvD)
        score.append(VinvD.T @ r)
    return sandwich_from_scores(info, score)


def _fisher_scoring(family, corstr, clusters, Xa, ya, off, w, mm, sq, p, q, active, maxiter, tol):
    """geeCRT's FITPRENTICE loop (joint Fisher scoring of beta and alpha, then dispersion)."""
    beta = _init_beta(family, Xa, ya, off, w * mm)
    n_obs = float(mm.sum())  # individuals

    def pearson(mu, v):
        return float(np.sum(w * (mm * (ya - mu) ** 2 + sq) / v) / (n_obs - p))

    mu0, _, v0 = _mean(family, Xa @ beta + off)
    phi = 1.0 if family == "binomial" else pearson(mu0, v0)
    alpha = np.where(active, 0.01, 0.0)
    notes: list[str] = []
    converged = False
    n_iter = 0
    for n_iter in range(1, maxiter + 1):
        for n_modi in range(_MAX_SHRINK + 1):
            U_b, I_b = np.zeros(p), np.zeros((p, p))
            U_a, I_a = np.zeros(q), np.zeros(q)
            violated = False
            for c in clusters:
                mu, v, sd, D, r, VinvD = _pieces(family, c, beta, alpha, phi, corstr)
                U_b += VinvD.T @ r
                I_b += D.T @ VinvD
                if q:
                    ua, ia, bad = _pair_sums(family, c, corstr, mu, v, r / sd, alpha, sd)
                    U_a += ua
                    I_a += ia
                    violated |= bad or bool(np.any(np.abs(alpha) >= 1))
            if not violated:
                break
            if n_modi == _MAX_SHRINK:
                notes.append("correlation out of range after 20 shrinks")
                break
            alpha = np.zeros(q) if n_iter == 1 else 0.95 * alpha
        if np.min(np.linalg.eigvalsh(I_b)) <= 1e-13:
            raise np.linalg.LinAlgError("information matrix for beta is singular")
        delta_b = np.linalg.solve(I_b, U_b)
        delta_a = np.where(active, U_a / np.where(I_a > 0, I_a, 1.0), 0.0)
        beta = beta + delta_b
        alpha = alpha + delta_a
        if family == "gaussian":
            phi = _gaussian_dispersion(clusters, corstr, beta, alpha, phi, I_b, n_obs, p)
        elif family == "poisson":
            mu, _, v = _mean(family, Xa @ beta + off)
            phi = pearson(mu, v)
        step = np.max(np.abs(np.concatenate([delta_b, delta_a])))
        if step <= tol:
            converged = True
            break
    return beta, alpha, phi, n_iter, converged, notes


def _gaussian_dispersion(clusters, corstr, beta, alpha, phi, info_prev, n_obs, p):
    """geeCRT's PHI: s2 = sum_i r_i' B_i (B_i - D_i Omega D_i')^{-1} r_i / (N - p).

    B_i: working covariance at the new (beta, alpha) and previous s2; Omega = ``info_prev``^{-1},
    the inverse information of the step just taken. By Woodbury,
    r' B (B - D Omega D')^{-1} r = r'r + (D'r)' (Omega^{-1} - D'B^{-1}D)^{-1} D'B^{-1} r.
    With prior weights the leading r'r and D'r carry w (Pearson-type residuals); for cell means
    r'r = sum w (m rbar^2 + ss) and D'r = D'(w m rbar), the sums over the cells' individuals.
    """
    rss = 0.0
    for c in clusters:
        _, _, _, D, r, VinvD = _pieces("gaussian", c, beta, alpha, phi, corstr)
        Dr = D.T @ (c.w * c.m * r)
        rss += float(
            np.sum(c.w * (c.m * r**2 + c.ss)) + Dr @ np.linalg.solve(info_prev - D.T @ VinvD, VinvD.T @ r)
        )
    return rss / (n_obs - p)
