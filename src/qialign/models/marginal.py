"""Population-averaged effects for a new cluster: marginal over the random effects (DESIGN §4-5).

Per posterior draw, the fixed part of the linear predictor of every analysed cell c, without
random effects, at mean alignment (z = 0) and mean fidelity:

    x_c = mu + f(t_c) + s(t_c) + Z_c beta          (f centred over periods; s: harmonics)

A new cluster in a period has random intercept b = u_site + v_cluster + w_cluster,period ~
N(0, tau0^2), tau0^2 = sd_site^2 + sd_cluster^2 + sd_cluster_period^2 (the stationary variance
for AR(1) w), and with the intervention the full effect theta + delta, delta ~ N(0, sd_treatment^2)
independent of b. The expected outcome per patient without and with the intervention, at the
trial's period (and covariate) mix:

    P0 = sum_c w_c E[m(x_c + tau0 Z)] / sum_c n_c,   P1 = sum_c w_c E[m(x_c + theta + tau1 Z)] / sum_c n_c

with tau1^2 = tau0^2 + sd_treatment^2, Z ~ N(0, 1), m the outcome mean given the predictor
(:func:`mean_outcome`) and w_c = n_c (exposure_c for counts: m is then a rate per exposure
unit, so w_c m = n_c x the expected count per patient). For a logit link E over Z is by
Gauss-Hermite quadrature on QUADRATURE_NODES probabilists' nodes z_k with weights w_k / sqrt(2 pi):
E[g(tau Z)] = sum_k w_k g(tau z_k) / sqrt(2 pi), deterministic and exact for the tested draws. The
other means are linear (gaussian) or exponential (log link, lognormal) in Z, so their expectation
is closed: E[exp(s tau Z)] = exp(s^2 tau^2 / 2), s = 1 (counts) or y's SD (lognormal, internal
units).

Rows: ``pa_difference`` P1 - P0 (risk difference, count per patient difference, mean
difference); ``pa_ratio`` P1 / P0 (risk ratio, rate ratio; binary and count outcomes);
``pa_odds_ratio`` [P1 / (1 - P1)] / [P0 / (1 - P0)] (binary). These are what a GEE's exp(beta)
estimates, unlike exp(theta), the conditional (cluster-specific) odds ratio, which for a logit
link lies further from 1 than the population-averaged one.
"""

from __future__ import annotations

import numpy as np

from qialign.families import FAMILIES
from qialign.results import PA_DIFFERENCE, PA_ODDS_RATIO, PA_RATIO, RISK_RATIO

#: Gauss-Hermite nodes of the integral over a new cluster's random effects (a logistic-normal
#: mean with tau <= 3 is exact to about 1e-9 on 41 nodes)
QUADRATURE_NODES = 41
#: nodes with a smaller weight are left out: a mean of probabilities (in [0, 1]) moves by less than
#: their total weight, 1.5e-16 for the 10 of 41 nodes left out
NEGLIGIBLE_WEIGHT = 1e-14
#: random-effect SDs of a new cluster's intercept (their variances add) and of its effect
INTERCEPT_SDS = ("sd_site", "sd_cluster", "sd_cluster_period")
EFFECT_SD = "sd_treatment"


def mean_outcome(fit, x: np.ndarray) -> np.ndarray:
    """Outcome mean given link-scale predictor draws x (chain, draw, ...): a probability, a rate
    per exposure unit (counts), y's mean (gaussian; lognormal exp(m + sigma^2 / 2) in y units)."""
    fam, d = FAMILIES[fit.spec.family], fit.design
    if fam.kind in ("binary", "count"):
        return fam.inverse_link(x)
    if fam.name == "gaussian":
        return d.y_center + d.y_scale * x
    sigma = np.asarray(fit.idata["posterior"]["sigma"]) * d.y_scale
    sigma = sigma.reshape(sigma.shape + (1,) * (np.ndim(x) - sigma.ndim))
    return np.exp(d.y_center + d.y_scale * x + 0.5 * sigma**2)


def fixed_predictor(fit, cells: np.ndarray | None = None) -> np.ndarray:
    """x_c = mu + f(t_c) + s(t_c) + Z_c beta per draw and cell (chain, draw, cell), internal units;
    ``cells``: only these cells (indices)."""
    post, d = fit.idata["posterior"], fit.design
    cells = np.arange(d.n_cells) if cells is None else cells
    mu = np.asarray(post["mu"])
    trend = np.asarray(post["trend"])  # recorded as f - f(first period); f sums to zero over periods
    per = trend - trend.mean(-1, keepdims=True)
    if "b_season" in post:
        per = per + np.asarray(post["b_season"]) @ d.season.T
    x = mu[..., None] + per[..., d.period_idx[cells]]
    if d.Z.shape[1]:
        x = x + np.asarray(post["beta"]) @ d.Z[cells].T
    return x


def cell_groups(fit) -> tuple[np.ndarray, np.ndarray]:
    """(a cell of each group, summed weight w_c of the group): cells with the same period and
    covariates share x_c, so the integral is computed once per group."""
    d, fam = fit.design, FAMILIES[fit.spec.family]
    weight = d.y["exposure"] if fam.kind == "count" else d.n
    key = np.column_stack([d.period_idx, d.Z])
    _, first, inverse = np.unique(key, axis=0, return_index=True, return_inverse=True)
    return first, np.bincount(inverse.ravel(), weights=weight)  # every group has a cell


def random_sds(fit) -> tuple[np.ndarray, np.ndarray]:
    """(tau0, tau1) per draw: SD of a new cluster's intercept without / with the intervention (0
    for one series)."""
    post = fit.idata["posterior"]
    var0 = 0.0  # one series: no random intercept
    for name in (n for n in INTERCEPT_SDS if n in post):
        var0 = var0 + np.asarray(post[name]) ** 2
    var1 = var0 + (np.asarray(post[EFFECT_SD]) ** 2 if EFFECT_SD in post else 0.0)
    return np.sqrt(var0), np.sqrt(var1)


def quadrature_nodes() -> tuple[np.ndarray, np.ndarray]:
    """(z_k, w_k / sqrt(2 pi)): the probabilists' Gauss-Hermite nodes of weight at least
    ``NEGLIGIBLE_WEIGHT`` (31 of QUADRATURE_NODES), E[g(Z)] ~ sum_k w_k g(z_k) / sqrt(2 pi)."""
    z, w = np.polynomial.hermite_e.hermegauss(QUADRATURE_NODES)
    w = w / np.sqrt(2 * np.pi)
    keep = w >= NEGLIGIBLE_WEIGHT
    return z[keep], w[keep]


def _integrated_mean(fit, x: np.ndarray, tau: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """sum_c weight_c E[m(x_c + tau Z)] per draw (chain, draw): Gauss-Hermite over Z for a logit
    link, else closed (module docstring)."""
    fam = FAMILIES[fit.spec.family]
    if fam.link != "logit":  # m = a + b exp(s x): E[m(x + tau Z)] = m(x) exp(s^2 tau^2 / 2), s = 0 linear
        s = 1.0 if fam.kind == "count" else fit.design.y_scale if fam.name == "lognormal" else 0.0
        return (mean_outcome(fit, x) @ weight) * np.exp(0.5 * (s * tau) ** 2)
    total = np.zeros(x.shape[:-1])
    for z, wk in zip(*quadrature_nodes(), strict=True):
        total = total + wk * (mean_outcome(fit, x + (tau * z)[..., None]) @ weight)
    return total


def expected_outcomes(fit) -> tuple[np.ndarray, np.ndarray]:
    """(P0, P1) per draw: a new cluster's expected outcome per patient without / with the
    intervention at the trial's period mix (module docstring)."""
    d = fit.design
    cells, weight = cell_groups(fit)
    x = fixed_predictor(fit, cells)
    theta = np.asarray(fit.idata["posterior"]["treatment_effect"])
    tau0, tau1 = random_sds(fit)
    n = float(np.sum(d.n))
    p0 = _integrated_mean(fit, x, tau0, weight) / n
    p1 = _integrated_mean(fit, x + theta[..., None], tau1, weight) / n
    return p0, p1


def population_averaged(fit) -> list[tuple[str, str, np.ndarray]]:
    """(estimand, scale, draws) of the population-averaged effects for a new cluster."""
    fam = FAMILIES[fit.spec.family]
    p0, p1 = expected_outcomes(fit)
    rows = [(PA_DIFFERENCE, fam.marginal_scale, p1 - p0)]
    if fam.kind == "binary":
        rows.append((PA_RATIO, RISK_RATIO, p1 / p0))
        rows.append((PA_ODDS_RATIO, fam.natural_scale, (p1 / (1 - p1)) / (p0 / (1 - p0))))
    elif fam.kind == "count":
        rows.append((PA_RATIO, fam.natural_scale, p1 / p0))
    return rows
