"""Estimands from a fitted model (DESIGN §4-5): one row each, posterior mean and interval.

Columns: ``estimand, scale, estimate, lower, upper, interval, r_hat, ess_bulk``; ``interval`` is
e.g. ``eti95`` (equal-tailed) or ``hdi95`` (config ``interval``). R-hat (rank-normalised) and bulk
ESS are computed on each estimand's own draws.

- treatment_effect theta: effect at mean alignment (and mean fidelity) on the link scale (log-odds,
  log-rate, difference in mean log y, or mean difference in y's units for gaussian). With eti
  exposure it is the unweighted mean of theta_e over the exposure times present; tate / pte
  (window, point) are in :mod:`qialign.models.exposure`.
- treatment_effect_natural: exp(theta) (odds ratio, rate ratio, ratio of geometric means) or
  theta itself for gaussian (difference).
- alignment_main alpha: difference in the outcome without the intervention per SD of alignment.
- alignment_interaction gamma: change in theta per SD of alignment; effect_low/high_alignment:
  theta + gamma z at the 10th / 90th percentile of the clusters' standardised alignment z_j.
- fidelity_interaction: change in theta per SD of fidelity (over treated cluster-periods).
- prob_beats_trend: P(theta < 0) when ``better: lower``, else P(theta > 0); no interval.
- marginal_difference: standardisation over the analysed population: for every analysed cell c,
  the expected outcome with the intervention on, g^-1(eta_c - tx_c + theta + gamma A_j + delta_j)
  (full, steady-state effect at mean fidelity), minus off, g^-1(eta_c - tx_c), averaged with weight
  n_c (per patient). Scales: risk difference (binomial), mean difference in y units (gaussian;
  lognormal with E[y] = exp(m + s^2 / 2)), difference in expected count per patient (counts).
  An in-sample conditional effect: it averages over every analysed cell, pre-periods included,
  given the fitted cluster and cluster-period effects.
- pa_difference, pa_ratio, pa_odds_ratio: population-averaged effects for a new cluster,
  marginal over the random effects (:mod:`qialign.models.marginal`); what a GEE estimates.
- conditioning / population of each row (``qialign.results``): population-averaged / new cluster
  for the pa_ rows, conditional / in-sample for marginal_difference, blank for the variance
  components, shape, rho, icc and cac, conditional / new cluster for the model's effect parameters.
- variance components on the link scale (gaussian / lognormal in y or log-y units): sd_site,
  sd_cluster, sd_cluster_period, sd_treatment, sigma, phi (NB shape), rho (AR(1)).
- icc = (s_site^2 + s_cluster^2 + s_cp^2) / (that + s_1^2) on the latent scale, with level-1
  variance s_1^2 = pi^2 / 3 (logit), sigma^2 (gaussian / lognormal), log(1 + 1/lambda) (Poisson)
  or log(1 + 1/lambda + 1/phi) (NB), lambda = exp(mu) x mean exposure per unit (Nakagawa et al.
  2017's lognormal approximation). The unit is where the counts were recorded: a patient for
  counts summed from patient rows, a cluster-period (ward-month) for ``overdispersion: cell``, so
  the ICC of ward-level counts is the share of the log-rate variance of ward-months that lies
  between wards and ward-months rather than in the count's own Poisson-gamma noise.
  cac (cluster autocorrelation, lag 1) =
  (s_site^2 + s_cluster^2 + rho s_cp^2) / (s_site^2 + s_cluster^2 + s_cp^2), rho = 0 exchangeable.
"""

from __future__ import annotations

import arviz_stats as azs
import numpy as np
import pandas as pd
import xarray as xr
from scipy import sparse

from qialign.config import schema_defaults
from qialign.families import FAMILIES
from qialign.models import exposure
from qialign.models.marginal import mean_outcome, population_averaged
from qialign.results import (
    CONDITIONAL,
    CORRELATION,
    IN_SAMPLE,
    LATENT,
    NEW_CLUSTER,
    PA_DIFFERENCE,
    PA_ODDS_RATIO,
    PA_RATIO,
    POPULATION_AVERAGED,
    PROBABILITY,
    SD,
    SHAPE,
    interval_label,
)

COLUMNS = [
    *("estimand", "conditioning", "population", "scale", "estimate", "lower", "upper"),
    *("interval", "r_hat", "ess_bulk"),
]
#: random-effect SDs reported on the link scale (the first three make the ICC's between variance)
VARIANCE_COMPONENTS = ("sd_site", "sd_cluster", "sd_cluster_period", "sd_treatment")
#: rows that are not effects: no conditioning, no population
NOT_EFFECTS = (*VARIANCE_COMPONENTS, "sigma", "phi", "rho", "icc", "cac")


def estimand_kind(name: str) -> tuple[str, str]:
    """(conditioning, population) of an estimand row (``qialign.results``; module docstring)."""
    if name in (PA_DIFFERENCE, PA_RATIO, PA_ODDS_RATIO):
        return POPULATION_AVERAGED, NEW_CLUSTER
    if name == "marginal_difference":
        return CONDITIONAL, IN_SAMPLE
    return ("", "") if name in NOT_EFFECTS else (CONDITIONAL, NEW_CLUSTER)


def _interval(iv: dict | None) -> tuple[float, str]:
    iv = {**schema_defaults("interval"), **(iv or {})}
    return float(iv["prob"]), str(iv["kind"])


def _da(x) -> xr.DataArray:
    """Draws (chain, draw[, ...]) as a DataArray with arviz's sample dims."""
    return xr.DataArray(np.asarray(x)).rename(dim_0="chain", dim_1="draw")


def _bounds(x, prob: float, kind: str) -> np.ndarray:
    """Interval over (chain, draw) for draws of shape (chain, draw[, k]) -> (2[, k])."""
    fn = azs.hdi if kind == "hdi" else azs.eti
    return np.moveaxis(np.asarray(fn(_da(x), prob=prob)), -1, 0)


def _convergence(draws: np.ndarray, refits: int) -> tuple[float, float]:
    """(R-hat, bulk ESS) of (chain, draw[, ...]) draws. With ``refits`` > 1 (propagation: draws) the
    chains are refit-major groups whose posteriors differ by design: the worst within-refit R-hat
    and the summed ESS."""
    groups = np.split(draws, refits)
    rhat = max(float(azs.rhat(_da(g))) for g in groups)
    return rhat, float(sum(float(azs.ess(_da(g))) for g in groups))


def estimand_row(name: str, scale: str, draws, prob: float, kind: str, refits: int) -> dict:
    """Posterior mean, interval and convergence of one estimand (none for draws without spread)."""
    draws = np.asarray(draws)
    lo, hi = _bounds(draws, prob, kind)
    ok = np.isfinite(draws).all() and draws.std() > 0
    r_hat, ess = _convergence(draws, refits) if ok else (np.nan, np.nan)
    return {
        "estimand": name,
        "scale": scale,
        "estimate": float(draws.mean()),
        "lower": float(lo),
        "upper": float(hi),
        "interval": interval_label(prob, kind),
        "r_hat": r_hat,
        "ess_bulk": ess,
    }


def _post(fit):
    return fit.idata["posterior"]


def _inv_link_mean(fit, x: np.ndarray) -> np.ndarray:
    """Expected per-patient outcome of each cell for link-scale predictor draws x (.., cell)."""
    d, m = fit.design, mean_outcome(fit, x)
    return m * (d.y["exposure"] / d.n) if FAMILIES[fit.spec.family].kind == "count" else m


def _derived(fit, key: str, compute):
    """``fit.derived[key]``, computed on first use: the draws x cells arrays that the estimands
    and both counterfactual tables share are computed once per fit, not once per table."""
    if key not in fit.derived:
        fit.derived[key] = compute()
    return fit.derived[key]


def _off_on(fit):
    """(as assigned, without, fully with the intervention) link-scale draws per cell, or None."""

    def compute():
        post, d = _post(fit), fit.design
        if "eta" not in post.data_vars:
            return None
        eta, tx = np.asarray(post["eta"]), np.asarray(post["tx"])
        off = eta - tx
        return eta, off, off + np.asarray(post["cluster_effect"])[..., d.cluster_idx]

    return _derived(fit, "cell_predictions", compute)


def _mean_outcomes(fit) -> tuple:
    """``_inv_link_mean`` of each of ``_cell_predictions`` (actual, without, with)."""
    predictions = _cell_predictions(fit)
    return _derived(fit, "mean_outcomes", lambda: tuple(_inv_link_mean(fit, x) for x in predictions))


def estimates(fit, interval: dict | None = None) -> pd.DataFrame:
    """Table of the named estimands (see module docstring), columns ``COLUMNS``."""
    prob, kind = _interval(interval)
    refits = int(fit.diagnostics.get("refits", 1))

    def row(name, scale, draws):
        return estimand_row(name, scale, draws, prob, kind, refits)

    theta = np.asarray(_post(fit)["treatment_effect"]) * fit.design.y_scale
    rows = _effect_rows(fit, theta, row) + exposure.estimand_rows(fit, row)
    better = -1 if fit.spec.better == "lower" else 1  # the sign of a beneficial effect
    rows.append(
        {
            "estimand": "prob_beats_trend",
            "scale": PROBABILITY,
            "estimate": np.mean(np.sign(theta) == better),
            "interval": "",
        }
    )
    if _off_on(fit) is not None:  # standardised over the analysed cells, weight n
        _, off, on = _mean_outcomes(fit)
        d = fit.design
        diff = ((on - off) * d.n).sum(-1) / d.n.sum()
        rows.append(row("marginal_difference", FAMILIES[fit.spec.family].marginal_scale, diff))
    rows += [row(name, scale, x) for name, scale, x in population_averaged(fit)]
    rows += _variance_rows(fit, row)
    if "sd_cluster" in _post(fit):  # cluster intercepts; one series (ITS) has no between-cluster variation
        rows += _icc_rows(fit, row)
    out = pd.DataFrame(rows)
    kinds = out["estimand"].map(estimand_kind)  # (conditioning, population) of each row
    out["conditioning"], out["population"] = kinds.str[0], kinds.str[1]
    return out[COLUMNS]


def _effect_rows(fit, theta: np.ndarray, row) -> list[dict]:
    """theta (link and natural), kappa, alpha, gamma, the effects at low / high alignment, fidelity."""
    post, d, fam = _post(fit), fit.design, FAMILIES[fit.spec.family]
    link = fam.link_scale

    def draws(name):
        return np.asarray(post[name]) * d.y_scale

    rows = [
        row("treatment_effect", link, theta),
        row("treatment_effect_natural", fam.natural_scale, fam.natural(theta)),
    ]
    if "slope_change" in post:  # segmented regression: change in slope per period after the start
        kappa = draws("slope_change")
        rows += [
            row("slope_change", link, kappa),
            row("slope_change_natural", fam.natural_scale, fam.natural(kappa)),
        ]
    if "alignment_main" in post:  # difference in the untreated outcome per SD of alignment
        rows.append(row("alignment_main", link, draws("alignment_main")))
    if "alignment_interaction" in post:
        gamma = draws("alignment_interaction")
        rows.append(row("alignment_interaction", link, gamma))
        # 10th / 90th percentile of cluster alignment; per draw when alignment is uncertain
        # (propagation draws / joint store the standardised alignment each draw used)
        A = np.asarray(post["alignment_z"]) if "alignment_z" in post else d.A
        q10, q90 = np.quantile(A, [0.1, 0.9], axis=-1)
        rows.append(row("effect_low_alignment", link, theta + gamma * q10))
        rows.append(row("effect_high_alignment", link, theta + gamma * q90))
    if "fidelity_interaction" in post:
        rows.append(row("fidelity_interaction", link, draws("fidelity_interaction")))
    return rows


def _variance_rows(fit, row) -> list[dict]:
    """Variance components (link scale; sigma in y units), NB shape phi and AR(1) rho."""
    post, ys, link = _post(fit), fit.design.y_scale, FAMILIES[fit.spec.family].link_scale
    rows = [row(n, link, np.asarray(post[n]) * ys) for n in VARIANCE_COMPONENTS if n in post]
    if "sigma" in post:
        rows.append(row("sigma", SD, np.asarray(post["sigma"]) * ys))
    if "phi" in post:
        rows.append(row("phi", SHAPE, post["phi"]))
    if "rho" in post:
        rows.append(row("rho", CORRELATION, post["rho"]))
    return rows


def _icc_rows(fit, row) -> list[dict]:
    """icc and cac on the latent scale (module docstring)."""
    post, spec, d, fam = _post(fit), fit.spec, fit.design, FAMILIES[fit.spec.family]
    s2_site, s2_cl, s2_cp = (np.asarray(post[n]) ** 2 if n in post else 0.0 for n in VARIANCE_COMPONENTS[:3])
    if fam.level1_variance is not None:  # logit: pi^2 / 3
        s2_1 = fam.level1_variance
    elif fam.kind == "continuous":
        s2_1 = np.asarray(post["sigma"]) ** 2
    else:
        units = d.n.sum() if spec.overdispersion == "patient" else d.n_cells
        lam = np.exp(np.asarray(post["mu"])) * d.y["exposure"].sum() / units
        extra = 1 / np.asarray(post["phi"]) if fam.name == "negative_binomial" else 0.0
        s2_1 = np.log1p(1 / lam + extra)
    between = s2_site + s2_cl + s2_cp
    icc = between / (between + s2_1)
    if "sd_cluster_period" not in post:  # exchangeable within cluster: cac = 1 (no spread, no R-hat)
        return [row("icc", LATENT, icc), row("cac", LATENT, np.ones_like(icc))]
    rho = np.asarray(post["rho"]) if "rho" in post else 0.0
    return [row("icc", LATENT, icc), row("cac", LATENT, (s2_site + s2_cl + rho * s2_cp) / between)]


def exposure_effects(fit, interval: dict | None = None) -> pd.DataFrame:
    """``exposure_effects.csv``: the effect at each exposure time (:mod:`qialign.models.exposure`)."""
    return exposure.exposure_effects(fit, _bounds, *_interval(interval))


def cluster_effects(fit, interval: dict | None = None) -> pd.DataFrame:
    """Per-cluster effect theta + gamma z_j + delta_j (link and natural scale) with intervals."""
    prob, kind = _interval(interval)
    d, fam = fit.design, FAMILIES[fit.spec.family]
    ce = np.asarray(_post(fit)["cluster_effect"]) * d.y_scale
    lo, hi = _bounds(ce, prob, kind)
    site = [d.sites[i] for i in d.cluster_site]
    out = pd.DataFrame(
        {
            "cluster": d.clusters,
            "site": site,
            "alignment": d.align_raw.to_numpy() if d.align_raw is not None else np.nan,
            "alignment_z": (
                np.asarray(_post(fit)["alignment_z"]).mean(axis=(0, 1))
                if "alignment_z" in _post(fit)
                else (d.A if d.A is not None else np.nan)
            ),
            "scale": fam.link_scale,
            "estimate": ce.mean(axis=(0, 1)),
            "lower": lo,
            "upper": hi,
            "interval": interval_label(prob, kind),
        }
    )
    nat = fam.natural(ce)
    nlo, nhi = _bounds(nat, prob, kind)
    out["natural_scale"] = fam.natural_scale
    out["natural_estimate"], out["natural_lower"], out["natural_upper"] = (
        nat.mean(axis=(0, 1)),
        nlo,
        nhi,
    )
    return out


def _cell_predictions(fit):
    """(actual, without, with) link-scale draws per cell; ValueError without stored predictions."""
    oo = _off_on(fit)
    if oo is None:
        raise ValueError("counterfactual needs stored cell predictions (store_predictions)")
    return oo


def _shown_means(fit) -> dict[str, np.ndarray]:
    """Per cell, the outcome in the unit the report shows it, for the predictor as assigned
    ("actual"), without and with the intervention: the expected per-patient outcome, the
    log-scale mean E log y for lognormal (exponentiated after averaging: a geometric mean)."""
    d = fit.design
    if fit.spec.family == "lognormal":
        means = [d.y_center + d.y_scale * x for x in _cell_predictions(fit)]
    else:
        means = _mean_outcomes(fit)
    return dict(zip(("actual", "without", "with"), means, strict=True))


#: the largest cell-by-group weight matrix held dense (8 bytes an entry: 32 MiB)
DENSE_GROUP_WEIGHTS = 2**22


def _weighted_by(fit, m: np.ndarray, groups: np.ndarray, k: int, mask=None) -> np.ndarray:
    """Within each draw, the n-weighted mean of cell values m (.., cell) over each of the k
    groups (cells where ``mask``); lognormal: exponentiated (the geometric mean). The sums are
    one product with the cell-by-group weight matrix (dense up to ``DENSE_GROUP_WEIGHTS``
    entries: a BLAS product, 0.04 s for 4,000 draws x 3,984 cells x 120 groups; sparse, 0.13 s)."""
    d = fit.design
    w = d.n if mask is None else d.n * mask
    cells = np.arange(len(groups))
    if len(groups) * k <= DENSE_GROUP_WEIGHTS:
        weights = np.zeros((len(groups), k))
        weights[cells, groups] = w
    else:
        weights = sparse.csc_array((w, (cells, groups)), shape=(len(groups), k))
    num = (m.reshape(-1, m.shape[-1]) @ weights).reshape(*m.shape[:-1], k)
    with np.errstate(invalid="ignore"):  # 0 / 0: a group without (masked) cells is NaN
        out = num / np.bincount(groups, weights=w, minlength=k)
    return np.exp(out) if fit.spec.family == "lognormal" else out


def _band(out: pd.DataFrame, label: str, m: np.ndarray, prob: float, kind: str) -> None:
    """``label``_mean / _lower / _upper columns: posterior mean and interval over draws of m
    (chain, draw, k); NaN where m has no value (a period without treated cells)."""
    ok = np.isfinite(m).all(axis=(0, 1))
    lo, hi = np.full(m.shape[-1], np.nan), np.full(m.shape[-1], np.nan)
    if ok.any():
        lo[ok], hi[ok] = _bounds(m[..., ok], prob, kind)
    out[f"{label}_mean"] = np.where(ok, m.mean(axis=(0, 1)), np.nan)
    out[f"{label}_lower"], out[f"{label}_upper"] = lo, hi


def counterfactual(fit, interval: dict | None = None) -> pd.DataFrame:
    """Expected outcome per cluster-period: as assigned, without and with the intervention.

    Each cluster-period averages its cells' expected per-patient outcome with weight n within
    each draw (probability for binomial, count per patient for counts, mean y for gaussian,
    geometric mean exp(E log y) for lognormal, compared with the observed geometric mean), then
    takes the interval over draws.
    """
    prob, kind = _interval(interval)
    d, fam = fit.design, fit.spec.family
    ncp = len(d.cp_keys)  # cp_idx takes every value 0 .. ncp - 1 (observed cluster-periods)
    n_cp = np.bincount(d.cp_idx, weights=d.n)
    obs = np.bincount(d.cp_idx, weights=d.cells[FAMILIES[fam].total_column]) / n_cp
    out = d.cp_keys[["cluster", "period"]].copy()
    treated = np.zeros(ncp, dtype=int)
    treated[d.cp_idx] = d.treated  # the same for every cell of a cluster-period
    out["treated"] = treated
    out["n"] = n_cp
    out["observed"] = np.exp(obs) if fam == "lognormal" else obs
    for label, m in _shown_means(fit).items():
        _band(out, label, _weighted_by(fit, m, d.cp_idx, ncp), prob, kind)
    out["interval"] = interval_label(prob, kind)
    return out


def _rate_per_exposure(fit, m: np.ndarray, mask=None) -> np.ndarray:
    """Counts: n-weighted per-patient means m (.., period) divided by the period's exposure per
    patient, i.e. the expected rate per exposure unit (the unit of the observed count / exposure)."""
    d = fit.design
    if FAMILIES[fit.spec.family].kind != "count":
        return m
    w = d.n if mask is None else d.n * mask
    exposure = np.bincount(d.period_idx, weights=d.y["exposure"] * (w > 0))
    patients = np.bincount(d.period_idx, weights=w)
    return m * patients / exposure  # m is NaN where no cell is left: NaN / 0, no warning


def _trend_draws(fit) -> tuple[np.ndarray, np.ndarray]:
    """f(t) - f(first period) (link scale, y units for gaussian / lognormal) and the outcome at
    baseline g^-1(mu + f(t)) with f centred over periods, per draw (chain, draw, period)."""
    post, d, fam = _post(fit), fit.design, FAMILIES[fit.spec.family]
    trend = np.asarray(post["trend"])
    x = np.asarray(post["mu"])[..., None] + trend - trend.mean(-1, keepdims=True)
    if fam.name == "gaussian":
        natural = d.y_center + d.y_scale * x
    elif fam.name == "lognormal":  # the geometric mean exp(E log y)
        natural = np.exp(d.y_center + d.y_scale * x)
    else:  # probability; rate per exposure unit
        natural = fam.inverse_link(x)
    return trend * d.y_scale, natural


def counterfactual_by_period(fit, interval: dict | None = None) -> pd.DataFrame:
    """Per period, bands computed per posterior draw (s), then the interval over draws.

    m_s(t) = sum_c n_c E_s[y_c] / sum_c n_c over the period's cells c, for the predictor as
    assigned (``actual``), without the intervention (``without``), fully with it (``with``), and
    the same over the period's treated cells (``actual_treated``, ``without_treated``: the
    counterfactual of the treated). E[y_c] as in :func:`counterfactual` (lognormal: exp of the
    weighted mean of E log y; counts: divided by the period's exposure per patient, a rate per
    exposure unit). The secular trend f(t) alone, without cluster, cluster-period, site or
    seasonal effects, the intervention, at mean alignment and covariates: ``trend_link`` =
    f(t) - f(first period) and ``trend`` = g^-1(mu + f(t)) (f centred over periods).
    """
    prob, kind = _interval(interval)
    d = fit.design
    k, treated = len(d.periods), d.treated
    out = pd.DataFrame({"period": d.periods})
    out["n"] = np.bincount(d.period_idx, weights=d.n)  # every period has cells
    out["n_treated"] = np.bincount(d.period_idx, weights=d.n * treated)
    shown = _shown_means(fit)
    series = [(label, m, None) for label, m in shown.items()]
    series += [(f"{label}_treated", shown[label], treated) for label in ("actual", "without")]
    for label, m, mask in series:
        m = _weighted_by(fit, m, d.period_idx, k, mask)
        _band(out, label, _rate_per_exposure(fit, m, mask), prob, kind)
    link, natural = _trend_draws(fit)
    _band(out, "trend_link", link, prob, kind)
    _band(out, "trend", natural, prob, kind)
    out["interval"] = interval_label(prob, kind)
    return out
