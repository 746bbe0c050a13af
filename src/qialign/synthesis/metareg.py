"""Random-effects meta-regression: REML heterogeneity and Knapp-Hartung inference.

y_i = x_i' b + u_i + e_i, u_i ~ N(0, tau^2), e_i ~ N(0, v_i) with v_i known. For a given tau^2,
W = diag(1 / (v_i + tau^2)), b = (X'WX)^-1 X'Wy and P = W - WX(X'WX)^-1 X'W. tau^2 maximises the
restricted log-likelihood

    l_R(tau^2) = -1/2 [ sum log(v_i + tau^2) + log |X'WX| + y'Py ]

over tau^2 >= 0. Knapp & Hartung (2003): Var(b) = s^2 (X'WX)^-1 with
s^2 = sum w_i (y_i - x_i'b)^2 / (k - p), and t-tests / intervals on k - p degrees of freedom.
QE = sum (y_i - x_i'b_FE)^2 / v_i tests residual heterogeneity (chi^2, k - p df); R^2 is the
proportional reduction of tau^2 from the intercept-only model (0 when negative), as metafor
reports it. Checked against metafor's BCG example (tests/data/metafor_bcg.csv).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import optimize, stats


@dataclass
class MetaRegression:
    """A fitted model: coefficients with Knapp-Hartung SEs, t on ``df``, tau^2, QE, R^2 and F."""

    coef: np.ndarray
    se: np.ndarray
    df: int
    tau2: float
    qe: float
    r2: float
    f: float

    def interval(self, prob: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
        q = stats.t.ppf(0.5 + prob / 2, self.df)
        return self.coef - q * self.se, self.coef + q * self.se

    @property
    def t(self) -> np.ndarray:
        return self.coef / self.se

    @property
    def p(self) -> np.ndarray:
        return 2 * stats.t.sf(np.abs(self.t), self.df)


def _gls(y, v, X, tau2):
    w = 1.0 / (v + tau2)
    xtwx = X.T @ (w[:, None] * X)
    b = np.linalg.solve(xtwx, X.T @ (w * y))
    return b, w, xtwx


def _restricted_loglik(tau2: float, y, v, X) -> float:
    b, w, xtwx = _gls(y, v, X, tau2)
    r = y - X @ b
    return -0.5 * (np.sum(np.log(v + tau2)) + np.linalg.slogdet(xtwx)[1] + np.sum(w * r**2))


def reml_tau2(y, v, X) -> float:
    """tau^2 maximising l_R over [0, 10 (var(y) + max v)] (bounded Brent, to 1e-10)."""
    upper = 10.0 * (np.var(y) + np.max(v)) + 1e-8
    res = optimize.minimize_scalar(
        lambda t: -_restricted_loglik(t, y, v, X), bounds=(0.0, upper), method="bounded",
        options={"xatol": 1e-10},
    )  # fmt: skip
    at_zero = -_restricted_loglik(0.0, y, v, X)
    return 0.0 if at_zero <= res.fun else float(res.x)


def meta_regression(y, v, X) -> MetaRegression:
    """REML random-effects meta-regression of ``y`` (variances ``v``) on ``X`` (with its intercept
    column), Knapp-Hartung standard errors (module docstring)."""
    y, v, X = np.asarray(y, float), np.asarray(v, float), np.asarray(X, float)
    k, p = X.shape
    if k <= p:
        raise ValueError(f"meta-regression needs more estimates ({k}) than coefficients ({p})")
    tau2 = reml_tau2(y, v, X)
    b, w, xtwx = _gls(y, v, X, tau2)
    s2 = np.sum(w * (y - X @ b) ** 2) / (k - p)
    cov = s2 * np.linalg.inv(xtwx)
    b_fe, _, _ = _gls(y, v, X, 0.0)
    qe = float(np.sum((y - X @ b_fe) ** 2 / v))
    tau2_0 = reml_tau2(y, v, X[:, :1])
    r2 = max(0.0, (tau2_0 - tau2) / tau2_0) if tau2_0 > 0 else 0.0
    slopes = b[1:]
    f = float(slopes @ np.linalg.solve(cov[1:, 1:], slopes) / (p - 1)) if p > 1 else float("nan")
    return MetaRegression(b, np.sqrt(np.diag(cov)), k - p, tau2, qe, r2, f)
