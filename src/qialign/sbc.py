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

Settings: ``config/sbc.yaml`` (see ``DEFAULTS``). Tests of uniformity: chi-square on B bins of the
ranks (exact bin probabilities when B does not divide L + 1) and the ECDF-difference test with
simultaneous bands (Säilynoja, Bürkner and Vehtari 2022), calibrated by Monte Carlo under the
discrete uniform. Coverage of the central interval with a Clopper-Pearson interval.
"""

from __future__ import annotations

import copy
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from scipy import stats
from scipy.special import logit

from qialign.errors import QialignError

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
    from qialign.models.spec import simulated_spec

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
    import pymc as pm
    import pytensor

    from qialign.models.build import build_model
    from qialign.models.design import build_design
    from qialign.models.fit import compile_nutpie

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
    import pymc as pm

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
    from qialign.models.diagnostics import diagnose
    from qialign.models.fit import nutpie_sample

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
                f"replicate {r}: {time.perf_counter() - t0:.1f} s, divergences {worst['divergences']}, "
                f"max R-hat {worst['r_hat_max']:.3f}, min bulk ESS {worst['ess_bulk_min']:.0f}, "
                f"event rate {worst['event_rate']:.3f}"
            )
    return pd.concat(out, ignore_index=True) if out else pd.DataFrame(columns=COLUMNS)


# --- aggregate --------------------------------------------------------------------------------


def bin_probabilities(L: int, bins: int) -> np.ndarray:
    """Probability of each of ``bins`` rank bins under the discrete uniform on {0..L} (rank r goes
    to bin floor(r B / (L + 1)); equal when B divides L + 1)."""
    idx = (np.arange(L + 1) * bins) // (L + 1)
    return np.bincount(idx, minlength=bins) / (L + 1)


def bin_counts(ranks, L: int, bins: int) -> np.ndarray:
    ranks = np.asarray(ranks, int)
    return np.bincount((ranks * bins) // (L + 1), minlength=bins)


def chi_square_uniformity(ranks, L: int, bins: int) -> tuple[float, float]:
    """(statistic, p-value) of Pearson's chi-square test of the binned ranks against uniform."""
    ranks = np.asarray(ranks, int)
    if ((ranks < 0) | (ranks > L)).any():
        raise ValueError(f"ranks outside 0..{L}")
    obs = bin_counts(ranks, L, bins)
    exp = bin_probabilities(L, bins) * len(ranks)
    res = stats.chisquare(obs, exp)
    return float(res.statistic), float(res.pvalue)


def _ecdf_counts(ranks: np.ndarray, L: int) -> np.ndarray:
    """N F(k) for k = 0..L-1, per row of ``ranks`` (M x N) -> (M x L)."""
    M = ranks.shape[0]
    idx = ranks + (L + 1) * np.arange(M)[:, None]
    counts = np.bincount(idx.ravel(), minlength=M * (L + 1)).reshape(M, L + 1)
    return counts.cumsum(axis=1)[:, :L]


def _min_tail(counts: np.ndarray, N: int, p: np.ndarray) -> np.ndarray:
    """min over k of the two-sided pointwise binomial tail probability of N F(k) (per row)."""
    lo = stats.binom.cdf(counts, N, p)
    hi = stats.binom.sf(counts - 1, N, p)
    return np.minimum(1.0, 2 * np.minimum(lo, hi)).min(axis=-1)


@dataclass
class ECDFTest:
    p_value: float
    statistic: float  # smallest two-sided pointwise tail probability over the evaluation points
    gamma: float  # pointwise level giving simultaneous 1 - alpha bands
    z: np.ndarray  # evaluation points (k + 1) / (L + 1), k = 0..L-1
    diff: np.ndarray  # F(k) - z
    lower: np.ndarray  # simultaneous band for the difference
    upper: np.ndarray


def ecdf_uniformity(ranks, L: int, simulations: int = 10000, alpha: float = 0.05, seed: int = 0) -> ECDFTest:
    """ECDF-difference test of discrete-uniform ranks with simultaneous 1 - alpha bands.

    Under uniformity N F(k) ~ Binomial(N, (k + 1) / (L + 1)) at every k. The statistic is the
    smallest two-sided pointwise tail probability over k; its null distribution is simulated
    (``simulations`` samples of N uniform ranks), giving the p-value P(null <= observed) and the
    pointwise level gamma (alpha-quantile of the null) of the simultaneous band (Säilynoja et al. 2022).
    """
    ranks = np.asarray(ranks, int)
    N = len(ranks)
    p = (np.arange(L) + 1) / (L + 1)
    observed = float(_min_tail(_ecdf_counts(ranks[None, :], L), N, p)[0])
    rng = np.random.default_rng(seed)
    null = np.concatenate(
        [
            _min_tail(_ecdf_counts(rng.integers(0, L + 1, size=(b, N)), L), N, p)
            for b in np.diff(np.r_[0:simulations:2000, simulations])
        ]
    )
    p_value = float((1 + np.sum(null <= observed)) / (simulations + 1))
    gamma = float(np.quantile(null, alpha))
    F = _ecdf_counts(ranks[None, :], L)[0] / N
    lower = stats.binom.ppf(gamma / 2, N, p) / N - p
    upper = stats.binom.ppf(1 - gamma / 2, N, p) / N - p
    return ECDFTest(p_value, observed, gamma, p, F - p, lower, upper)


def clopper_pearson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    a = 1 - level
    lo = stats.beta.ppf(a / 2, k, n - k + 1) if k > 0 else 0.0
    hi = stats.beta.ppf(1 - a / 2, k + 1, n - k) if k < n else 1.0
    return float(lo), float(hi)


SUMMARY_COLUMNS = [
    "parameter",
    "replicates",
    "L",
    "bins",
    "chi2",
    "chi2_p",
    "ecdf_p",
    "coverage",
    "coverage_lower",
    "coverage_upper",
    "interval",
    "mean_rank_fraction",
    "replicates_divergent",
    "divergences",
    "r_hat_max",
    "ess_bulk_min",
    "sample_s",
    "success_rate",
    "success_lower",
    "success_upper",
    "passes",
]


def passes(row: dict, cfg: dict):
    """True / False against ``cfg['criteria']``; None when the parameter is not checked."""
    crit = cfg["criteria"]
    if row["parameter"] not in crit["parameters"]:
        return None
    lo, hi = crit["coverage"]
    p_min = float(crit["uniformity_p"])
    return bool(row["chi2_p"] > p_min and row["ecdf_p"] > p_min and lo <= row["coverage"] <= hi)


def summarise(ranks: pd.DataFrame, cfg: dict) -> pd.DataFrame:
    """One row per parameter: uniformity tests, coverage (95% Clopper-Pearson), diagnostics and
    ``passes`` (``criteria``; empty for parameters not checked)."""
    L, B = int(cfg["ranks"]["draws"]), int(cfg["ranks"]["bins"])
    sims = int(cfg["ranks"]["ecdf_simulations"])
    rows = []
    for i, p in enumerate(cfg["parameters"]):
        t = ranks[ranks["parameter"] == p]
        if t.empty:
            continue
        if (t["L"] != L).any():
            raise QialignError(f"{p}: ranks out of L = {L} mixed with others; rerun the chunks")
        r = t["rank"].to_numpy(int)
        chi2, chi2_p = chi_square_uniformity(r, L, B)
        ecdf = ecdf_uniformity(r, L, sims, seed=int(cfg["seed"]) + i)
        k, n = int(t["covered"].sum()), len(t)
        lo, hi = clopper_pearson(k, n)
        pp = t["prob_positive"].to_numpy(float) if "prob_positive" in t else np.full(n, np.nan)
        wins = int((np.maximum(pp, 1 - pp) > float(cfg["success"])).sum())
        s_lo, s_hi = clopper_pearson(wins, n) if np.isfinite(pp).all() else (np.nan, np.nan)
        rows.append(
            {
                "parameter": p,
                "replicates": n,
                "L": L,
                "bins": B,
                "chi2": chi2,
                "chi2_p": chi2_p,
                "ecdf_p": ecdf.p_value,
                "coverage": k / n,
                "coverage_lower": lo,
                "coverage_upper": hi,
                "interval": float(cfg["interval"]),
                "mean_rank_fraction": float(r.mean() / L),
                "replicates_divergent": int((t["divergences"] > 0).sum()),
                "divergences": int(t["divergences"].sum()),
                "r_hat_max": float(t["r_hat_max"].max()),
                "ess_bulk_min": float(t["ess_bulk_min"].min()),
                "sample_s": float(t["sample_s"].sum()),
                "success_rate": wins / n if np.isfinite(pp).all() else np.nan,
                "success_lower": s_lo,
                "success_upper": s_hi,
            }
        )
        rows[-1]["passes"] = passes(rows[-1], cfg)
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


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
