"""The PyMC graph of DESIGN §4 on cluster-period cells.

    eta_c = mu + f(t_c) + Z_c beta + alpha A_j + tx_c + u_site + v_cluster + w_cluster,period
    tx_c  = X_c h(e_c) (theta_e + gamma A_j + phi_f F_c + delta_j)

alpha, the alignment main effect, sits beside its interaction (DESIGN §4): without it a baseline
difference between wards that tracks alignment can only go into the shrunk cluster intercepts, and
what they do not absorb leaks into gamma.

Random effects are non-centred (effect = sd * z, z ~ N(0, 1)) unless said otherwise. Site and
cluster intercepts use sum-to-zero z (ZeroSumNormal): K iid N(0, s^2) effects minus their mean are exactly
ZeroSumNormal(s), and mu absorbs the mean, so the model is the usual random-intercept model with
a decorrelated intercept (much better mixing with few sites or clusters). When the data pin an
effect down the non-centred form gives divergences and low ESS instead; ``parametrization:
centred`` samples v ~ ZeroSumNormal(sd_cluster) directly and centres exchangeable cluster-period
effects hierarchically, eta_cp ~ N(mu + f + tx + u + v, sd_cluster_period) with the cell's
predictor eta_cp + Z beta (w = eta_cp - the rest); ``auto`` decides per term (``centred_terms``:
information per level x prior SD^2 >= 1000 for clusters, >= 10 for cluster-periods), so the
default trial (~100 patients per ward-month) keeps both non-centred and a trial with ~1,000
patients per cluster-period centres its cluster-period effects. The likelihood of the cells given
eta is ``qialign.models.likelihood``.

Trend: categorical period effects are ZeroSumNormal(trend_sd); linear / spline coefficients
Normal(0, trend_sd) on bases centred over periods; rw1 f_t = f_{t-1} + sd_trend z_t, centred.
Priors (``priors``): Normal(0, sd) on the link scale for effects; the intercept is
Normal(mu0, intercept_sd) with mu0 the empirical link-scale mean; half-normal SDs; NB
phi ~ Exponential(phi_rate); AR(1) rho ~ Beta(2, 2) on (0, 1) (positive decay).
AR(1) cluster-period effects are stationary: w_j = sd L(rho) z_j with L the Cholesky factor of
the AR(1) correlation, L[t, s] = rho^(t-s) c_s (t >= s), c_0 = 1, c_s = sqrt(1 - rho^2).
"""

from __future__ import annotations

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from qialign.alignment.latent_model import add_latent_terms, latent_coords
from qialign.families import FAMILIES
from qialign.models.design import Design, covariate_strata
from qialign.models.exposure import validate as validate_exposure
from qialign.models.likelihood import likelihood_term
from qialign.models.spec import ModelSpec

MAX_STORED_CELLS = 20_000
#: the per-cell predictions (linear predictor eta and the intervention's part of it, tx) kept with
#: the posterior when ``stores_predictions``: computed from the draws after sampling, not stored by
#: the sampler at every draw (``qialign.inference.fit``)
PREDICTIONS = ("eta", "tx")


def stores_predictions(spec: ModelSpec, design: Design) -> bool:
    if spec.store_predictions is None:
        return design.n_cells <= MAX_STORED_CELLS
    return bool(spec.store_predictions)


#: auto parametrisation: centre a random-effect term when the data information per level, times
#: the prior scale squared, is at least this (the likelihood then dominates the prior and the
#: non-centred form turns into a funnel of its own). The prior scale overstates the typical true SD
#: (about 0.05-0.15 on the link scale in QI trials), so the bar is high: on the default trial a
#: threshold of 10 centred the cluster effects and gave divergences and ESS < 400 for sd_cluster
#: (death, readmission), while non-centred fits were clean; only very large cells are centred.
CENTRE_THRESHOLD = 1000.0
#: the same rule for exchangeable cluster-period effects, which are centred hierarchically (the
#: cell's linear predictor is the parameter, see ``build_model``). Measured on the binomial SW
#: benchmark (benchmarks/README.md): at information x prior SD^2 of 1.7 (10k patients) centring
#: gave ESS 11, at 17 (100k) it halved sampling time (19 vs 43 leapfrog steps), at 170 (1M) it
#: cut it six-fold (16 vs 98 steps), so the switch sits between: 10.
CP_CENTRE_THRESHOLD = 10.0

#: a site random intercept needs at least this many sites; with fewer its SD is not estimable
#: (2 sites: one contrast) and the cluster intercepts absorb site differences.
MIN_SITES = 3


def unit_information(design: Design) -> np.ndarray:
    """Approximate Fisher information per cell for a shift of the linear predictor.

    binomial n p (1 - p) at the overall rate; poisson/NB the expected count (its mean, an upper
    bound for NB); gaussian/lognormal n (y standardised, residual SD <= 1).
    """
    d = design
    if FAMILIES[d.family].kind == "binary":
        p = float(np.clip(d.y["events"].sum() / d.n.sum(), 1e-3, 1 - 1e-3))
        return d.n * p * (1 - p)
    if FAMILIES[d.family].kind == "count":
        rate = max(d.y["count"].sum(), 0.5) / d.y["exposure"].sum()
        return d.y["exposure"] * rate
    return d.n.astype(float)


def centred_terms(spec: ModelSpec, design: Design) -> dict[str, bool]:
    """Centred (True) or non-centred parametrisation per random-effect term.

    ``parametrization: centred / noncentred`` applies to both terms; ``auto`` decides per term
    from the median information per level (cluster, cluster-period) times the prior SD squared:
    centred when >= CENTRE_THRESHOLD (cluster) or CP_CENTRE_THRESHOLD (exchangeable cluster-period
    effects; AR(1) ones stay non-centred). With ~100 patients per ward-month at p ~ 0.3 both terms
    stay non-centred (cluster: 1,600 x 0.21 x 0.5^2 ~ 80; cluster-period 100 x 0.21 x 0.3^2 ~ 2);
    with ~1,000 patients per cluster-period those effects are centred, with ~100,000 per cluster
    the cluster effects too.
    """
    if spec.parametrization != "auto":
        c = spec.parametrization == "centred"
        return {"cluster": c, "cluster_period": c}
    info = unit_information(design)
    per_cluster = np.bincount(design.cluster_idx, weights=info)
    per_cp = np.bincount(design.cp_idx, weights=info)
    pr = spec.priors
    return {
        "cluster": float(np.median(per_cluster)) * pr["sd_cluster"] ** 2 >= CENTRE_THRESHOLD,
        "cluster_period": float(np.median(per_cp)) * pr["sd_cluster_period"] ** 2 >= CP_CENTRE_THRESHOLD
        and spec.cluster_period == "exchangeable",
    }


def _add_coords(coords: dict) -> None:
    """Register a term's dimensions with the model being built (ones already there are kept)."""
    model = pm.modelcontext(None)
    for name, values in coords.items():
        if name not in model.coords:
            model.add_coord(name, values)


def trend_term(d: Design, spec: ModelSpec, pr: dict):
    """f(t) per period (rw1, categorical ``period`` or a ``trend_term`` basis), identified up to a
    constant; ``trend`` = f - f(first period) is recorded (zero with a single period, where f is
    None)."""
    T = len(d.periods)
    if d.trend_P is not None:
        _add_coords({"trend_term": d.trend_names})
    if spec.trend == "rw1":
        sd_rw = pm.HalfNormal("sd_trend", pr["trend_sd"])
        z_rw = pm.Normal("z_trend", 0, 1, shape=T - 1)
        f = pt.concatenate([pt.zeros(1), pt.cumsum(sd_rw * z_rw)])
        f = f - pt.mean(f)
    elif spec.trend == "period":
        f = pm.ZeroSumNormal("b_trend", sigma=pr["trend_sd"], dims="period")
    else:
        b_t = pm.Normal("b_trend", 0, pr["trend_sd"], dims="trend_term")
        f = pt.dot(pt.as_tensor(d.trend_P), b_t)
    if T == 1:
        pm.Deterministic("trend", pt.zeros(1), dims="period")
        return None
    pm.Deterministic("trend", f - f[0], dims="period")
    return f


def season_term(d: Design, spec: ModelSpec, pr: dict):
    """Harmonics sum_k b_sin,k sin(2 pi k t / L) + b_cos,k cos(...) per period, or None."""
    if d.season is None:
        return None
    k = range(1, spec.harmonics + 1)
    _add_coords({"season_term": [f"sin{i}" for i in k] + [f"cos{i}" for i in k]})
    b_s = pm.Normal("b_season", 0, pr["trend_sd"], dims="season_term")
    return pt.dot(pt.as_tensor(d.season), b_s)


def covariate_term(d: Design, pr: dict):
    """Z beta per cell (standardised covariates; ``beta_raw`` per raw unit), or None."""
    if not d.Z.shape[1]:
        return None
    _add_coords({"covariate": d.cov_names})
    Z = pm.Data("Z", d.Z, dims=("cell", "covariate"))
    beta = pm.Normal("beta", 0, pr["beta_sd"], dims="covariate")
    scale = pm.Data("cov_scale", d.cov_scale, dims="covariate")  # data, not a constant of the graph
    pm.Deterministic("beta_raw", beta / scale, dims="covariate")
    return pt.dot(Z, beta)


def treatment_term(d: Design, spec: ModelSpec, pr: dict):
    """(theta, effect per cell): theta = ``treatment_effect`` ~ N(0, effect_sd); with eti one
    ``theta_e`` = theta + dev_e per exposure time, dev ~ ZeroSumNormal(exposure_sd). The deviations
    sum to zero, so the mean of theta_e over the design's exposure times is theta exactly: its prior
    SD is effect_sd whatever their number L (iid N(0, effect_sd) theta_e gave effect_sd / sqrt(L)),
    and each theta_e has prior SD sqrt(effect_sd^2 + exposure_sd^2 (1 - 1/L)). The deviations' scale
    is fixed, not estimated: a half-normal SD (scale 0.5) shrank them towards a step (weakly
    identified beside period effects) and pulled the TATE towards the step model's answer (7
    simulated stepped wedges, true TATE -0.77: mean estimate -0.48, 4 of 7 90% intervals covering;
    fixed scale 1: estimates within 0.15 of the ETI GEE's). One exposure time: theta_e = theta."""
    theta = pm.Normal("treatment_effect", 0, pr["effect_sd"])
    if spec.exposure != "eti":
        return theta, theta
    validate_exposure(spec, d)
    _add_coords({"exposure_time": d.eti_levels})
    if len(d.eti_levels) == 1:
        theta_e = pm.Deterministic("theta_e", theta * pt.ones(1), dims="exposure_time")
    else:
        dev = pm.ZeroSumNormal("exposure_deviation", sigma=pr["exposure_sd"], dims="exposure_time")
        theta_e = pm.Deterministic("theta_e", theta + dev, dims="exposure_time")
    return theta, theta_e[pm.Data("eti_idx", d.eti_idx, dims=d.cell_dim)]


def _alignment(d: Design, latent):
    """A_j: the data ``alignment_z``, or (joint) the survey model's alignment at the wave,
    standardised over clusters within each draw."""
    if latent is None:
        return pm.Data("alignment_z", d.A, dims="cluster")
    if list(latent[0].clusters) != list(d.clusters):
        raise ValueError("joint alignment: the survey's clusters must be the design's, in order")
    _add_coords(latent_coords(latent[0]))
    a = add_latent_terms(latent[0])[latent[1]]
    a_c = a - pt.mean(a)
    return pm.Deterministic(
        "alignment_z", a_c / pt.sqrt(pt.sum(a_c**2) / (len(d.clusters) - 1)), dims="cluster"
    )


def moderator_terms(d: Design, spec: ModelSpec, pr: dict, latent, cidx, eff, ce):
    """Alignment (main effect ``alignment_main`` and ``alignment_interaction``) and fidelity
    (``fidelity_interaction``) moderation; returns (main effect per cell or None, effect, cluster
    effect)."""
    main = None
    if d.A is not None:
        A = _alignment(d, latent)
        # main effect: baseline differences that track alignment must not leak into gamma
        # through the (shrunk) cluster intercepts; a standardised cluster covariate, beta_sd
        if spec.moderator_main_effects:
            main = pm.Normal("alignment_main", 0, pr["beta_sd"]) * A[cidx]
        gamma = pm.Normal("alignment_interaction", 0, pr["interaction_sd"])
        eff = eff + gamma * A[cidx]
        ce = ce + gamma * A
    if d.F is not None:
        F = pm.Data("fidelity_z", d.F, dims=d.cell_dim)
        phi_f = pm.Normal("fidelity_interaction", 0, pr["interaction_sd"])
        eff = eff + phi_f * F
    return main, eff, ce


def random_treatment_term(spec: ModelSpec, pr: dict, cidx, eff, ce):
    """delta_j = sd_treatment z_j added to the effect of cluster j (non-centred)."""
    if not spec.random_treatment:
        return eff, ce
    sd_tx = pm.HalfNormal("sd_treatment", pr["sd_treatment"])
    delta = sd_tx * pm.Normal("z_treatment", 0, 1, dims="cluster")
    return eff + delta[cidx], ce + delta


def exposure_term(d: Design, pr: dict, h, eff):
    """tx = h(e) x effect, plus a ``slope_change`` kappa (e - 1) in treated cells (segmented)."""
    tx = h * eff
    if d.slope is not None:
        kappa = pm.Normal("slope_change", 0, pr["effect_sd"])
        tx = tx + kappa * pm.Data("slope", d.slope, dims=d.cell_dim)
    return tx


def site_term(d: Design, spec: ModelSpec, pr: dict, eta):
    """u_site = sd_site z (sum-to-zero z), with at least MIN_SITES sites."""
    if not (spec.site_effect and len(d.sites) >= MIN_SITES):
        return eta
    _add_coords({"site": d.sites})
    sd_s = pm.HalfNormal("sd_site", pr["sd_site"])
    z_s = pm.ZeroSumNormal("z_site", sigma=1.0, dims="site")
    return eta + (sd_s * z_s)[pm.Data("site_idx", d.site_idx, dims=d.cell_dim)]


def cluster_term(d: Design, pr: dict, centred_cluster: bool, cidx, eta):
    """v_cluster: ZeroSumNormal(sd_cluster), centred or sd_cluster x z; none for one series."""
    if len(d.clusters) <= 1:  # one series (interrupted time series): no cluster intercepts
        return eta
    sd_c = pm.HalfNormal("sd_cluster", pr["sd_cluster"])
    if centred_cluster:
        v = pm.ZeroSumNormal("v_cluster", sigma=sd_c, dims="cluster")
    else:
        v = sd_c * pm.ZeroSumNormal("z_cluster", sigma=1.0, dims="cluster")
    return eta + v[cidx]


def cluster_period_term(d: Design, spec: ModelSpec, pr: dict, centred_cp: bool, idx: dict, eta, zb):
    """w_cluster,period: exchangeable (non-centred, or hierarchically centred) or AR(1)."""
    if spec.cluster_period == "exchangeable":
        sd_cp = pm.HalfNormal("sd_cluster_period", pr["sd_cluster_period"])
        if centred_cp:
            # hierarchical centring (Gelfand, Sahu & Carlin 1995): the cluster-period's linear
            # predictor itself is the parameter, eta_cp ~ N(rest of the predictor, sd_cp). With
            # thousands of patients per cell the data pin eta_cp, and the fixed and cluster effects
            # see it like a regression on cluster-period means: no ridge between w and the rest
            first = np.unique(d.cp_idx, return_index=True)[1]  # a cell of each cluster-period
            first = pm.Data("cp_first_cell", first, dims="cluster_period")
            base = (eta - zb)[first] if d.Z.shape[1] else (eta * pt.ones(d.n_cells))[first]
            eta_cp = pm.Normal("eta_cluster_period", base, sd_cp, dims="cluster_period")
            return eta_cp[idx["cp"]] + zb
        w = sd_cp * pm.Normal("z_cluster_period", 0, 1, dims="cluster_period")
        return eta + w[idx["cp"]]
    if spec.cluster_period == "ar1":
        T = len(d.periods)
        sd_cp = pm.HalfNormal("sd_cluster_period", pr["sd_cluster_period"])
        rho = pm.Beta("rho", 2.0, 2.0)
        lag = np.subtract.outer(np.arange(T), np.arange(T))
        c = pt.concatenate([pt.ones(1), pt.sqrt(1 - rho**2) * pt.ones(T - 1)])
        L = pt.where(lag >= 0, rho ** np.maximum(lag, 0) * c[None, :], 0.0)
        z_w = pm.Normal("z_cluster_period", 0, 1, dims=("cluster", "period"))
        w = sd_cp * pt.dot(z_w, L.T)  # (cluster, period)
        return eta + w[idx["cluster"], idx["period"]]
    return eta


def random_effect_terms(d: Design, spec: ModelSpec, pr: dict, idx: dict, eta, zb, centring: dict):
    """Site, cluster and cluster-period effects, parametrised per ``centring`` (``centred_terms``
    of the whole design)."""
    eta = site_term(d, spec, pr, eta)
    idx["cp"] = pm.Data("cp_idx", d.cp_idx, dims=d.cell_dim)
    eta = cluster_term(d, pr, centring["cluster"], idx["cluster"], eta)
    return cluster_period_term(d, spec, pr, centring["cluster_period"], idx, eta, zb)


def linear_predictor(d: Design, full: Design, spec: ModelSpec, latent, centring: dict):
    """(eta, tx, Z beta or None) on ``d``'s cells: ``full`` itself, or its strata
    (``Design.at_strata``), where eta leaves Z beta (per cell of ``full``) to the caller."""
    pr = spec.priors
    idx = {
        "cluster": pm.Data("cluster_idx", d.cluster_idx, dims=d.cell_dim),
        "period": pm.Data("period_idx", d.period_idx, dims=d.cell_dim),
    }
    h = pm.Data("h", d.h, dims=d.cell_dim)
    eta = pm.Normal("mu", pm.Data("mu0", d.mu0), pr["intercept_sd"])
    for per_period in (trend_term(d, spec, pr), season_term(d, spec, pr)):
        if per_period is not None:
            eta = eta + per_period[idx["period"]]
    zb = covariate_term(full, pr)
    inner_zb = zb if d is full else None
    if inner_zb is not None:
        eta = eta + inner_zb
    theta, eff = treatment_term(d, spec, pr)
    ce = theta * pt.ones(len(d.clusters))
    main, eff, ce = moderator_terms(d, spec, pr, latent if d.A is not None else None, idx["cluster"], eff, ce)
    if main is not None:
        eta = eta + main
    eff, ce = random_treatment_term(spec, pr, idx["cluster"], eff, ce)
    pm.Deterministic("cluster_effect", ce, dims="cluster")
    tx = exposure_term(d, pr, h, eff)
    eta = random_effect_terms(d, spec, pr, idx, eta + tx, 0.0 if inner_zb is None else inner_zb, centring)
    return eta, tx, zb


def build_model(design: Design, spec: ModelSpec, latent=None) -> pm.Model:
    """Build the PyMC model from its terms. Data arrays are ``pm.Data`` (``pm.set_data``, PyMC's
    sampler); nutpie compiles a copy with frozen dims, once per structure
    (``qialign.inference.sampling.compile_nutpie``). When cells share all terms but the covariates
    (``covariate_strata``) the predictor is built per stratum and gathered to the cells.

    ``latent = (survey, wave)`` (a ``qialign.alignment.latent_model.SurveyData`` whose clusters are the
    design's, and a wave index) builds the joint model of ``propagation: joint``: the survey's
    graded-response model lives in the same graph and A_j is its alignment a_j at that wave,
    standardised over clusters within each draw, (a_j - mean a) / sd a, so the survey and the
    outcome inform alignment together (``qialign.inference.modes`` on where the chains
    start).
    """
    d = design
    strata = covariate_strata(d)
    coords = {
        "cell": np.arange(d.n_cells),
        "cluster": d.clusters,
        "period": d.periods,
        "cluster_period": np.arange(len(d.cp_keys)),
    }
    if strata is not None:
        coords["stratum"] = np.arange(len(strata[0]))
    with pm.Model(coords=coords) as model:
        centring = centred_terms(spec, d)
        if strata is None:
            eta, tx, _ = linear_predictor(d, d, spec, latent, centring)
        else:
            eta_s, tx_s, zb = linear_predictor(d.at_strata(strata[0]), d, spec, latent, centring)
            stratum = pm.Data("stratum_idx", strata[1], dims="cell")
            eta, tx = eta_s[stratum], tx_s[stratum]
            if zb is not None:
                eta = eta + zb
        n = pm.Data("n", d.n, dims="cell")
        if stores_predictions(spec, d):
            for name, x in zip(PREDICTIONS, (eta, tx), strict=True):
                pm.Deterministic(name, x, dims="cell")
        likelihood_term(d, spec, pr=spec.priors, eta=eta, n=n)
    return model
