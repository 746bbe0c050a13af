"""Simulation-based calibration (SBC) of the outcome model (Talts et al. 2018; Modrák et al. 2023).

Each replicate draws every parameter from the model's prior and data from its likelihood on a fixed
design (``pm.sample_prior_predictive``, one draw, seed per replicate), fits the model to those data
and records the rank of the true value among L thinned posterior draws. If the sampler and the
model's implementation are right, the ranks are discrete-uniform on {0, ..., L} and 90% posterior
intervals cover the truth in 90% of replicates.

The prior must not depend on the data: ``build_design`` centres the intercept prior on the
empirical logit of the cells (``Design.mu0``), so here the design is built once and ``mu0`` is fixed
to ``logit(design.baseline)`` for the prior draws and every fit. The model is also compiled once
per process: the observed events are swapped in with ``pm.observe`` to a shared variable and
nutpie's ``with_data`` (the same mechanism ``fit_model`` uses for alignment draws), so a replicate
costs a sampling run, not a compilation. Random-effect parametrisation (``auto``) is decided on the
base design, so it does not vary with the simulated data either.

Settings: ``config/sbc.yaml`` (see ``DEFAULTS``); ``config/power_sim.yaml`` fixes true effects
(``truth``), which makes the same study simulation-based power. The rank and coverage statistics
are in ``qialign.studies.ranks``.
"""

from __future__ import annotations

import copy
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pymc as pm
import pytensor
import yaml
from scipy import stats
from scipy.special import logit

from qialign.errors import QialignError
from qialign.inference.compile_cache import configure_compile
from qialign.inference.diagnostics import diagnose
from qialign.inference.sampling import compile_nutpie, nutpie_sample
from qialign.models.build import build_model
from qialign.models.design import build_design
from qialign.models.spec import simulated_spec

DEFAULTS: dict = {
    "seed": 20261126,
    "replicates": 200,
    "chunks": 8,
    "design": {
        "clusters": 12,
        "periods": 7,
        "n": 50,  # patients per cluster-period
        "baseline": 0.3,  # intercept prior centred at logit(baseline), fixed (not from the data)
    },
    # a models: entry of a trial config (ModelSpec.from_config); priors: {} overrides the defaults
    "model": {"id": "sbc", "site_effect": False, "cluster_period": "exchangeable"},
    "family": "binomial",
    "sampler": {"chains": 2, "draws": 1000, "tune": 1000, "target_accept": 0.95, "cores": 1},
    "ranks": {"draws": 199, "bins": 10, "ecdf_simulations": 10000},
    "interval": 0.9,
    # fixed true values (parameter -> value): the other parameters still come from the prior, so the
    # run estimates power at these values (averaged over the nuisance prior) instead of calibration
    "truth": {},
    # a replicate "succeeds" for a parameter when P(parameter > 0) or P(parameter < 0) exceeds this:
    # the success rate is Bayesian assurance (no truth fixed) or simulation-based power (truth fixed)
    "success": 0.975,
    "parameters": ["treatment_effect", "alignment_interaction", "sd_cluster"],
    # pass / fail in summary.csv and the page: both uniformity p-values > uniformity_p and coverage
    # of the central interval within coverage, for these parameters
    "criteria": {
        "parameters": ["treatment_effect", "alignment_interaction"],
        "uniformity_p": 0.01,
        "coverage": [0.87, 0.93],
    },
}

#: per-replicate columns of chunk_<i>.csv and ranks.csv (one row per replicate x parameter)
COLUMNS = [
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
    "event_rate",
    "sample_s",
    "compile_s",
    "seed",
]


def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in (over or {}).items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def sbc_config(raw: dict | None = None) -> dict:
    """Defaults <- ``raw``, checked; raise QialignError listing every problem."""
    cfg = _merge(DEFAULTS, raw or {})
    problems = []
    d, r, s = cfg["design"], cfg["ranks"], cfg["sampler"]
    for key, low in (("clusters", 3), ("periods", 2), ("n", 1)):
        if not (isinstance(d[key], int) and d[key] >= low):
            problems.append(f"design/{key}: an integer >= {low}, got {d[key]!r}")
    if not 0 < float(d["baseline"]) < 1:
        problems.append(f"design/baseline: a probability in (0, 1), got {d['baseline']!r}")
    if not (isinstance(cfg["replicates"], int) and cfg["replicates"] >= 1):
        problems.append(f"replicates: an integer >= 1, got {cfg['replicates']!r}")
    if not (isinstance(cfg["chunks"], int) and 1 <= cfg["chunks"] <= max(cfg["replicates"], 1)):
        problems.append(f"chunks: an integer between 1 and replicates, got {cfg['chunks']!r}")
    if not (isinstance(r["draws"], int) and r["draws"] >= 1):
        problems.append(f"ranks/draws: an integer L >= 1, got {r['draws']!r}")
    elif int(s["chains"]) * int(s["draws"]) < r["draws"]:
        problems.append(
            f"ranks/draws: L = {r['draws']} thinned draws need at least that many posterior draws "
            f"(sampler: {s['chains']} chains x {s['draws']})"
        )
    if not (isinstance(r["bins"], int) and 2 <= r["bins"] <= r["draws"] + 1):
        problems.append(f"ranks/bins: an integer between 2 and L + 1, got {r['bins']!r}")
    if not 0 < float(cfg["interval"]) < 1:
        problems.append(f"interval: a probability in (0, 1), got {cfg['interval']!r}")
    if cfg["family"] not in ("binomial", "bernoulli"):
        problems.append(f"family: SBC is set up for binomial cells, got {cfg['family']!r}")
    if not 0.5 < float(cfg["success"]) < 1:
        problems.append(f"success: a posterior probability in (0.5, 1), got {cfg['success']!r}")
    if not isinstance(cfg["truth"], dict) or not all(
        isinstance(v, (int, float)) for v in cfg["truth"].values()
    ):
        problems.append(f"truth: a mapping parameter -> number, got {cfg['truth']!r}")
    if not cfg["parameters"]:
        problems.append("parameters: list at least one scalar parameter")
    crit = cfg["criteria"]
    if [p for p in crit["parameters"] if p not in cfg["parameters"]]:
        problems.append("criteria/parameters: every checked parameter must be in parameters")
    if not (isinstance(crit["coverage"], list) and len(crit["coverage"]) == 2):
        problems.append(f"criteria/coverage: [lower, upper], got {crit['coverage']!r}")
    if problems:
        raise QialignError("SBC configuration:\n" + "\n".join(f"- {p}" for p in problems))
    return cfg


def load_sbc_config(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise QialignError(f"{path}: SBC config not found.")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise QialignError(f"{path}: not valid YAML: {exc}") from None
    return sbc_config(raw)


# --- the fixed design -------------------------------------------------------------------------


def sbc_cells(cfg: dict) -> tuple[pd.DataFrame, pd.Series]:
    """Stepped-wedge cells (cluster x period, ``n`` patients each) and per-cluster alignment.

    Clusters cross over in (periods - 1) evenly sized groups, starting at period 2, so period 1 is
    all control and the last all intervention. Alignment: Blom normal scores, assigned to clusters
    in a fixed random order (seeded) so that it is not confounded with the crossover time.
    ``events`` is a placeholder (baseline x n): every replicate replaces it.
    """
    d = cfg["design"]
    J, T, n = int(d["clusters"]), int(d["periods"]), int(d["n"])
    clusters = [f"c{j:02d}" for j in range(J)]
    starts = 2 + (np.arange(J) * (T - 1)) // J
    rows = []
    for j, c in enumerate(clusters):
        for t in range(1, T + 1):
            treated = int(t >= starts[j])
            rows.append(
                {
                    "cluster": c,
                    "site": "all",
                    "period": t,
                    "treated": treated,
                    "exposure_time": int(t - starts[j] + 1) if treated else 0,
                    "n": n,
                    "events": int(round(float(d["baseline"]) * n)),
                }
            )
    scores = stats.norm.ppf((np.arange(1, J + 1) - 0.375) / (J + 0.25))
    order = np.random.default_rng(int(cfg["seed"])).permutation(J)
    alignment = pd.Series(scores[order], index=clusters, name="alignment")
    return pd.DataFrame(rows), alignment


def sbc_spec(cfg: dict):
    """The ModelSpec under test (a ``models:`` entry, no covariates); predictions not stored."""
    spec = simulated_spec(cfg["family"], dict(cfg["model"]))
    spec.sampler = {**spec.sampler, **cfg["sampler"]}
    spec.store_predictions = False
    return spec


@dataclass
class SBCModel:
    """Everything one process needs to run replicates: the design, the prior model (for draws) and
    the compiled posterior model whose observed events are settable."""

    cfg: dict
    spec: object
    design: object
    prior_model: object
    compiled: object
    data_name: str
    y_dtype: str
    compile_s: float
    params: list[str]


def prepare(cfg: dict, compile: bool = True) -> SBCModel:
    """Build the design once (``mu0`` fixed), the PyMC model, and (``compile``) its nutpie compile."""
    spec = sbc_spec(cfg)
    cells, alignment = sbc_cells(cfg)
    design = build_design(cells, spec, alignment)
    design.mu0 = float(logit(float(cfg["design"]["baseline"])))
    model = build_model(design, spec)
    missing = [p for p in [*cfg["parameters"], *cfg["truth"]] if p not in model.named_vars]
    if missing:
        raise QialignError(
            f"parameters: {', '.join(missing)} not in the model ({', '.join(model.named_vars)})"
        )
    data_name = "sbc_events"
    dtype = model["y"].dtype
    shared = pytensor.shared(np.asarray(design.y["events"], dtype=dtype), name=data_name)
    compiled, compile_s = None, 0.0
    if compile:
        configure_compile()
        t0 = time.perf_counter()
        compiled = compile_nutpie(pm.observe(model, {"y": shared}))
        compile_s = time.perf_counter() - t0
    prior_model = pm.do(model, {k: float(v) for k, v in cfg["truth"].items()}) if cfg["truth"] else model
    params = list(cfg["parameters"])
    return SBCModel(cfg, spec, design, prior_model, compiled, data_name, dtype, compile_s, params)


# --- one replicate ----------------------------------------------------------------------------


def replicate_seeds(seed: int, replicate: int) -> tuple[int, int, int]:
    """(prior draw, sampler, rank tie-break) seeds of one replicate: depend only on the master seed
    and the replicate index, so a replicate gives the same result whatever chunk it runs in."""
    s = np.random.SeedSequence([int(seed), int(replicate)]).generate_state(3)
    return tuple(int(x % (2**31 - 1)) for x in s)


def draw_prior(m: SBCModel, seed: int) -> tuple[dict, np.ndarray]:
    """One joint prior draw: (scalar parameters -> true value, simulated events per cell)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        draw = pm.sample_prior_predictive(draws=1, model=m.prior_model, random_seed=int(seed))
    prior, fixed = draw["prior"], m.cfg["truth"]
    truth = {
        p: float(fixed[p]) if p in fixed else float(np.asarray(prior[p]).reshape(-1)[0]) for p in m.params
    }
    events = np.asarray(draw["prior_predictive"]["y"]).reshape(-1)
    return truth, events


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
    prior_seed, sample_seed, tie_seed = replicate_seeds(cfg["seed"], replicate)
    truth, events = draw_prior(m, prior_seed)
    compiled = m.compiled.with_data(**{m.data_name: events.astype(m.y_dtype)})
    t0 = time.perf_counter()
    idata = nutpie_sample(compiled, m.spec.sampler, sample_seed)
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
                "event_rate": float(events.sum() / m.design.n.sum()),
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
                f"event rate {worst['event_rate']:.3f}"
            )
    return pd.concat(out, ignore_index=True) if out else pd.DataFrame(columns=COLUMNS)


def read_chunks(paths) -> pd.DataFrame:
    """Concatenate chunk CSVs; a replicate may appear once only."""
    frames = [pd.read_csv(p) for p in paths]
    ranks = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=COLUMNS)
    dup = ranks.duplicated(["replicate", "parameter"])
    if dup.any():
        reps = sorted(set(ranks.loc[dup, "replicate"]))
        raise QialignError(f"replicate(s) {reps[:10]} appear in more than one chunk")
    return ranks.sort_values(["parameter", "replicate"]).reset_index(drop=True)


def with_truth(m: SBCModel, replicate: int) -> tuple[dict, np.ndarray]:
    """The prior draw of one replicate (its true values and events), e.g. to inspect a bad one."""
    return draw_prior(m, replicate_seeds(m.cfg["seed"], replicate)[0])
