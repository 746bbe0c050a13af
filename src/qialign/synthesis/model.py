"""The hierarchical synthesis model: per-ward effects regressed on alignment across trials.

For ward j of trial i, with true alignment z_ij (standardised: over every ward of every trial when
alignment is ``common``, within each trial when ``within``)::

    b_ij = mu + u_i + beta z_ij + e_ij,      u_i ~ N(0, tau_trial^2),  e_ij ~ N(0, tau_ward^2)
    m_i  ~ MVN(b_i, S_i)                     (trial i's ward-effect posterior: mean m_i, cov S_i)
    a_ij ~ N(z_ij, se_ij^2)                  (measured score and its SE, errors-in-variables)
    z_ij ~ N(nu_i, omega^2)                  (true alignment: a mean per trial, one spread)

The scores' likelihood is a_ij ~ N(nu_i, omega^2 + se_ij^2), and true alignment given its score is
z | a ~ N(z^_ij, v_ij) with reliability r_ij = omega^2 / (omega^2 + se_ij^2), z^ = nu_i + r_ij (a_ij -
nu_i), v_ij = r_ij se_ij^2 (regression calibration with its uncertainty carried). u, e and z are
integrated out:

    m_i ~ MVN(mu + beta z^_i, S_i + diag(tau_ward^2 + beta^2 v_i) + tau_trial^2 11')

so the sampler sees mu, beta, the SDs and nu, omega only. Why not the latent z_ij: a trial's
ward-effect posterior lies close to its own fitted line in the plug-in scores (S_i nearly singular
off it), and a latent z that moves off the scores then pins beta at 0; a whitened likelihood with
explicit u and e did not mix. Sampled with nutpie through :mod:`qialign.inference.sampling`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from qialign.config import schema_defaults
from qialign.inference.sampling import compile_nutpie, nutpie_sample

#: prior SDs (link scale per SD of alignment; N(0, .) for mu and beta, half-normal for the SDs; nu and
#: omega in SDs of the measured scores)
PRIORS = {
    "mu_sd": 1.0,
    "beta_sd": 1.0,
    "tau_trial_sd": 0.5,
    "tau_ward_sd": 0.5,
    "nu_sd": 1.0,
    "omega_sd": 1.0,
}
#: the parameters whose convergence is checked and reported
PARAMETERS = ("mu", "beta", "tau_trial", "tau_ward")


@dataclass
class SynthesisData:
    """Stacked inputs: per-trial (m_i, S_i), ward trial index, standardised scores and SEs, and the
    standardisation (score = centre + scale z)."""

    m: list[np.ndarray]
    S: list[np.ndarray]
    trial_idx: np.ndarray
    a: np.ndarray
    se: np.ndarray
    centre: np.ndarray
    scale: np.ndarray


def standardise(a: np.ndarray, trial_idx: np.ndarray, mode: str) -> tuple[np.ndarray, np.ndarray]:
    """(centre, scale) per ward: the mean and SD (n - 1) of every ward's score (common) or of its
    trial's wards (within)."""
    if mode == "common":
        return np.full(len(a), a.mean()), np.full(len(a), a.std(ddof=1))
    centre = np.array([a[trial_idx == i].mean() for i in trial_idx])
    scale = np.array([a[trial_idx == i].std(ddof=1) for i in trial_idx])
    return centre, scale


def synthesis_data(m, S, a, se, trial_idx, mode: str) -> SynthesisData:
    """Stack and standardise (see :func:`standardise`); a score that does not vary is an error."""
    trial_idx = np.asarray(trial_idx)
    a, se = np.asarray(a, float), np.asarray(se, float)
    centre, scale = standardise(a, trial_idx, mode)
    if not np.all(scale > 0):
        raise ValueError("alignment does not vary (within a trial, for alignment: within)")
    return SynthesisData(list(m), list(S), trial_idx, (a - centre) / scale, se / scale, centre, scale)


def build_model(data: SynthesisData):
    """The PyMC model (module docstring): ward and trial effects and true alignment integrated out."""
    import pymc as pm
    import pytensor.tensor as pt

    k, n, t = len(data.m), len(data.a), data.trial_idx
    with pm.Model(coords={"trial": np.arange(k), "ward": np.arange(n)}) as model:
        mu = pm.Normal("mu", 0, PRIORS["mu_sd"])
        beta = pm.Normal("beta", 0, PRIORS["beta_sd"])
        tau_t = pm.HalfNormal("tau_trial", PRIORS["tau_trial_sd"])
        tau_w = pm.HalfNormal("tau_ward", PRIORS["tau_ward_sd"])
        nu = pm.Normal("nu", 0, PRIORS["nu_sd"], dims="trial")
        omega = pm.HalfNormal("omega", PRIORS["omega_sd"])
        pm.Normal("a", nu[t], pt.sqrt(omega**2 + data.se**2), observed=data.a, dims="ward")
        shrink = omega**2 / (omega**2 + data.se**2)  # reliability of each score
        z_hat = pm.Deterministic("alignment_z", nu[t] + shrink * (data.a - nu[t]), dims="ward")
        z_var = pm.Deterministic("alignment_z_var", shrink * data.se**2, dims="ward")
        start = 0
        for i, (m_i, S_i) in enumerate(zip(data.m, data.S, strict=True)):
            j, part = len(m_i), slice(start, start + len(m_i))
            cov = S_i + pt.diag(tau_w**2 + beta**2 * z_var[part]) + tau_t**2 * pt.ones((j, j))
            pm.MvNormal(f"m_{i}", mu=mu + beta * z_hat[part], cov=cov, observed=m_i)
            start += j
    return model


def diagnostics(idata) -> dict:
    """Worst R-hat, least bulk / tail ESS over PARAMETERS and the divergences, judged against the
    trial fits' thresholds (``diagnostics`` defaults of the trial schema): reliable, problems."""
    import arviz_stats as azs

    th = schema_defaults("diagnostics")
    summ = azs.summary(idata, var_names=list(PARAMETERS), kind="diagnostics", round_to="none")
    out = {
        "r_hat_max": float(summ["r_hat"].max()),
        "ess_bulk_min": float(summ["ess_bulk"].min()),
        "ess_tail_min": float(summ["ess_tail"].min()),
        "divergences": int(np.asarray(idata["sample_stats"]["diverging"]).sum()),
    }
    problems = []
    if not out["r_hat_max"] <= th["r_hat_max"]:
        problems.append(f"R-hat {out['r_hat_max']:.3f} > {th['r_hat_max']}")
    for kind in ("bulk", "tail"):
        if not out[f"ess_{kind}_min"] >= th[f"ess_{kind}_min"]:
            problems.append(f"{kind} ESS {out[f'ess_{kind}_min']:.0f} < {th[f'ess_{kind}_min']}")
    if out["divergences"] > th["divergences_max"]:
        problems.append(f"{out['divergences']} divergence(s)")
    return {**out, "reliable": not problems, "problems": problems}


def fit_synthesis(data: SynthesisData, sampler: dict, seed: int) -> tuple[object, dict]:
    """Sample the model; returns (DataTree, record with timings and :func:`diagnostics`)."""
    t0 = time.perf_counter()
    compiled = compile_nutpie(build_model(data))
    t1 = time.perf_counter()
    idata = nutpie_sample(compiled, sampler, seed)
    t2 = time.perf_counter()
    return idata, {"timings": {"compile_s": t1 - t0, "sample_s": t2 - t1}, **diagnostics(idata)}
