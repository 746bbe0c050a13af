"""Simulation-based calibration (SBC) of the outcome models (Talts et al. 2018; Modrák et al. 2023).

Each replicate draws every parameter from the model's prior and data from its likelihood on a fixed
design (``pm.sample_prior_predictive``, one draw, seed per replicate; ``qialign.studies.sbc_data``
completes what it cannot draw), fits the model to those data and records the rank of the true
value among L thinned posterior draws. If the sampler and the model's implementation are right,
the ranks are discrete-uniform on {0, ..., L} and 90% posterior intervals cover the truth in 90%
of replicates. Every family (binomial, poisson, negative_binomial, gaussian, lognormal) and
``propagation: joint`` (the survey's latent alignment model in the same graph) is checked.

The prior must not depend on the data: ``build_design`` centres the intercept prior on the
empirical link-scale mean (``Design.mu0``) and standardises continuous y by its own mean and SD,
so here the design is built once, ``mu0`` is fixed (``sbc_data.intercept_centre``) and simulated
continuous data live on the model's standardised scale. The model is compiled once per process:
the simulated data are swapped in with ``pm.observe`` to shared variables (the outcome, the survey
answers of a joint model) and ``pm.Data`` kept mutable (the sums of squares), through nutpie's
``with_data``, so a replicate costs a sampling run, not a compilation. Random-effect
parametrisation (``auto``) is decided on the base design, so it does not vary with the data.

Settings: ``config/sbc.yaml`` (``qialign.studies.sbc_config``); ``config/power_sim.yaml`` fixes
true effects (``truth``), which makes the same study simulation-based power. The rank and
coverage statistics are in ``qialign.studies.ranks``.
"""

from __future__ import annotations

import logging
import time
import warnings
import zlib
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pymc as pm
import pytensor

from qialign.errors import QialignError
from qialign.families import FAMILIES
from qialign.inference.compile_cache import configure_compile
from qialign.inference.diagnostics import diagnose
from qialign.inference.ess_target import sample_to_ess
from qialign.inference.modes import resolve_modes, sign_starts
from qialign.inference.sampling import compile_nutpie, nutpie_sample, take_initial_values
from qialign.models.build import build_model
from qialign.models.design import build_design
from qialign.models.likelihood import OBSERVED_DATA, observed_arrays
from qialign.models.spec import simulated_spec
from qialign.studies.sbc_data import (
    intercept_centre,
    sbc_cells,
    sbc_survey,
    simulate_answers,
    simulate_sumsq,
    threshold_draw,
)

#: per-replicate columns of chunk_<i>.csv and ranks.csv (one row per model x replicate x parameter);
#: outcome_mean: events / n, count / exposure, or the mean of standardised y
COLUMNS = [
    "model",
    "replicate",
    "parameter",
    "true",
    "rank",
    "L",
    "post_mean",
    "post_sd",
    "lower",
    "upper",
    "covered",
    "prob_positive",
    "r_hat",
    "ess_bulk",
    "divergences",
    "r_hat_max",
    "ess_bulk_min",
    "ess_tail_min",
    "ebfmi_min",
    "outcome_mean",
    "sample_s",
    "compile_s",
    "seed",
]

#: names of the model data a replicate sets (with "sumsq" of continuous models): the observed cell
#: totals and the joint model's survey answers
OUTCOME_DATA, SURVEY_DATA = OBSERVED_DATA, "sbc_survey"


def sbc_spec(cfg: dict):
    """The ModelSpec under test (a ``models:`` entry, no covariates); predictions not stored."""
    spec = simulated_spec(cfg["family"], dict(cfg["model"]))
    spec.sampler = {**spec.sampler, **cfg["sampler"]}
    spec.store_predictions = False
    return spec


@dataclass
class SBCModel:
    """Everything one process needs to run replicates of one model: the design, the prior model
    (for draws), the survey of a joint model and the compiled posterior model whose data are
    settable."""

    cfg: dict
    spec: object
    design: object
    prior_model: object
    compiled: list | None  # one compiled model per start (joint: one per sign of gamma)
    survey: object
    y_dtype: str
    compile_s: float
    params: list[str]


def prepare(cfg: dict, compile: bool = True) -> SBCModel:
    """Build one model's design once (``mu0`` fixed), its PyMC model (joint: with the simulated
    survey's measurement model) and (``compile``) its nutpie compile."""
    spec = sbc_spec(cfg)
    cells, alignment = sbc_cells(cfg)
    design = build_design(cells, spec, alignment)
    design.mu0 = intercept_centre(cfg)
    if FAMILIES[cfg["family"]].kind == "continuous":  # simulated on the model's own scale
        design.y_center, design.y_scale = 0.0, 1.0
    survey, answers = None, None
    if cfg["propagation"] == "joint":
        answers = pytensor.shared(sbc_survey(cfg, design.clusters).y, name=SURVEY_DATA)
        survey = sbc_survey(cfg, design.clusters, answers)
    model = build_model(design, spec, latent=(survey, 0) if survey else None)
    if answers is not None:  # model data, so that the compile is cached by structure
        model.register_data_var(answers)
    missing = [p for p in [*cfg["parameters"], *cfg["truth"]] if p not in model.named_vars]
    if missing:
        raise QialignError(
            f"models/{cfg['name']}/parameters: {', '.join(missing)} not in the model "
            f"({', '.join(v.name for v in model.free_RVs)})"
        )
    start = take_initial_values(model)  # every data array stays swappable (compile_nutpie)
    dtype = model[OUTCOME_DATA].dtype
    compiled, compile_s = None, 0.0
    if compile:
        configure_compile()
        t0 = time.perf_counter()
        starts = [start]
        if cfg["propagation"] == "joint":  # as a joint fit: half the chains at each sign of gamma
            starts = sign_starts(start, spec.priors["interaction_sd"])
        compiled = [compile_nutpie(model, start=st) for st in starts]
        compile_s = time.perf_counter() - t0
    prior_model = pm.do(model, {k: float(v) for k, v in cfg["truth"].items()}) if cfg["truth"] else model
    params = list(cfg["parameters"])
    return SBCModel(cfg, spec, design, prior_model, compiled, survey, dtype, compile_s, params)


# --- one replicate ----------------------------------------------------------------------------


def replicate_seeds(seed: int, replicate: int, model: str = "") -> tuple[int, int, int]:
    """(prior draw, sampler, rank tie-break) seeds of one replicate of one model: depend only on
    the master seed, the model's name and the replicate index, so a replicate gives the same result
    whatever chunk it runs in, and two models of a study draw independent replicates."""
    s = np.random.SeedSequence([int(seed), zlib.crc32(model.encode()), int(replicate)]).generate_state(3)
    return tuple(int(x % (2**31 - 1)) for x in s)


def draw_prior(m: SBCModel, seed: int) -> tuple[dict, dict]:
    """One joint prior draw: (scalar parameters -> true value, data name -> simulated values)."""
    rng = np.random.default_rng(int(seed))
    model = m.prior_model
    if m.survey is not None:  # the Flat cutpoints have no prior draw of their own (sbc_data)
        model = pm.do(model, {"u_threshold": threshold_draw(m.survey, rng)})
    log = logging.getLogger("pymc.sampling.forward")  # "Sampling: [...]" once per replicate
    level = log.level
    log.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "Potentials are ignored" (the survey, drawn below)
            draw = pm.sample_prior_predictive(draws=1, model=model, random_seed=int(seed))
    finally:
        log.setLevel(level)
    prior, fixed = draw["prior"], m.cfg["truth"]
    truth = {
        p: float(fixed[p]) if p in fixed else float(np.asarray(prior[p]).reshape(-1)[0]) for p in m.params
    }
    y = np.asarray(draw["prior_predictive"]["y"]).reshape(-1)
    data = observed_arrays(m.spec.family, y.astype(m.y_dtype), m.design.n)  # y and log h(y)
    if "sumsq" in m.design.y:
        sigma = float(np.asarray(prior["sigma"]).reshape(-1)[0])
        data["sumsq"] = simulate_sumsq(y, m.design.n, sigma, rng)
    if m.survey is not None:
        data[SURVEY_DATA] = simulate_answers(prior, m.survey, rng)
    return truth, data


def outcome_mean(m: SBCModel, data: dict) -> float:
    """events / n, count / exposure, or the mean of y*, over all cells."""
    y = m.design.y
    denominator = y["exposure"].sum() if "exposure" in y else m.design.n.sum()
    return float(data[OUTCOME_DATA].sum() / denominator)


def thin(draws: np.ndarray, L: int) -> np.ndarray:
    """L draws evenly spaced over the (chain-major) flattened draws: spacing >= floor(S / L)."""
    flat = np.asarray(draws, float).reshape(-1)
    S = flat.size
    if S < L:
        raise ValueError(f"{S} posterior draws, fewer than L = {L}")
    return flat[(np.arange(L) * S) // L]


def rank_of(true: float, thinned: np.ndarray, rng: np.random.Generator | None = None) -> int:
    """Number of thinned draws below the true value, in {0, ..., L}; ties (if any) broken at random."""
    thinned = np.asarray(thinned, float)
    below = int(np.sum(thinned < true))
    ties = int(np.sum(thinned == true))
    if ties and rng is not None:
        return below + int(rng.integers(0, ties + 1))
    return below


def fit_replicate(m: SBCModel, replicate: int) -> pd.DataFrame:
    """Draw, fit, rank: one row per checked parameter (``COLUMNS``)."""
    cfg = m.cfg
    prior_seed, sample_seed, tie_seed = replicate_seeds(cfg["seed"], replicate, cfg["name"])
    truth, data = draw_prior(m, prior_seed)
    parts = [c.with_data(**data) for c in m.compiled]
    t0 = time.perf_counter()
    if len(parts) == 1:
        idata = nutpie_sample(parts[0], m.spec.sampler, sample_seed)
    else:  # joint, as its fit: chains from both signs of gamma, those in a minor mode dropped
        fixed = {**m.spec.sampler, "draws_min": m.spec.sampler["draws"]}
        idata = sample_to_ess(parts, fixed, {}, sample_seed, lambda d: resolve_modes(d)[0])
    sample_s = time.perf_counter() - t0
    _, _, det = diagnose(idata, {"retry": False})
    summ = det["summary"]
    L = int(cfg["ranks"]["draws"])
    alpha = (1 - float(cfg["interval"])) / 2
    rng = np.random.default_rng(tie_seed)
    rows = []
    for p in m.params:
        draws = np.asarray(idata["posterior"][p], float)
        lo, hi = np.quantile(draws, [alpha, 1 - alpha])
        row = summ.loc[p] if p in summ.index else None
        rows.append(
            {
                "model": cfg["name"],
                "replicate": replicate,
                "parameter": p,
                "true": truth[p],
                "rank": rank_of(truth[p], thin(draws, L), rng),
                "L": L,
                "post_mean": float(draws.mean()),
                "post_sd": float(draws.std(ddof=1)),
                "lower": float(lo),
                "upper": float(hi),
                "covered": bool(lo <= truth[p] <= hi),
                "prob_positive": float((draws > 0).mean()),
                "r_hat": float(row["r_hat"]) if row is not None else np.nan,
                "ess_bulk": float(row["ess_bulk"]) if row is not None else np.nan,
                "divergences": int(det["divergences"]),
                "r_hat_max": det["r_hat_max"],
                "ess_bulk_min": det["ess_bulk_min"],
                "ess_tail_min": det["ess_tail_min"],
                "ebfmi_min": float(np.nanmin(det["ebfmi"])),
                "outcome_mean": outcome_mean(m, data),
                "sample_s": sample_s,
                "compile_s": 0.0,
                "seed": sample_seed,
            }
        )
    return pd.DataFrame(rows, columns=COLUMNS)


def chunk_replicates(cfg: dict, chunk: int) -> np.ndarray:
    """Replicate indices of one chunk (contiguous, sizes differ by at most one)."""
    k = int(cfg["chunks"])
    if not 0 <= chunk < k:
        raise QialignError(f"chunk {chunk}: the config has chunks 0..{k - 1}")
    return np.array_split(np.arange(int(cfg["replicates"])), k)[chunk]


def run_replicates(cfg: dict, replicates, progress=None) -> pd.DataFrame:
    """Compile once, then fit each replicate; the compile time is put on the first one's rows."""
    m = prepare(cfg)
    out = []
    for i, r in enumerate(replicates):
        t0 = time.perf_counter()
        rows = fit_replicate(m, int(r))
        if i == 0:
            rows["compile_s"] = m.compile_s
        out.append(rows)
        if progress:
            worst = rows.iloc[0]
            progress(
                f"#{r} in {time.perf_counter() - t0:.1f} s, divergences {worst['divergences']}, "
                f"max R-hat {worst['r_hat_max']:.3f}, min bulk ESS {worst['ess_bulk_min']:.0f}, "
                f"outcome mean {worst['outcome_mean']:.3f}"
            )
    return pd.concat(out, ignore_index=True) if out else pd.DataFrame(columns=COLUMNS)


def read_chunks(paths) -> pd.DataFrame:
    """Concatenate chunk CSVs; a replicate may appear once only."""
    frames = [pd.read_csv(p) for p in paths]
    ranks = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=COLUMNS)
    dup = ranks.duplicated(["model", "replicate", "parameter"])
    if dup.any():
        reps = sorted(set(ranks.loc[dup, "replicate"]))
        raise QialignError(f"replicate(s) {reps[:10]} appear in more than one chunk")
    return ranks.sort_values(["model", "parameter", "replicate"]).reset_index(drop=True)


def with_truth(m: SBCModel, replicate: int) -> tuple[dict, dict]:
    """The prior draw of one replicate (its true values and data), e.g. to inspect a bad one."""
    return draw_prior(m, replicate_seeds(m.cfg["seed"], replicate, m.cfg["name"])[0])
