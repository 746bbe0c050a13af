"""Fitting an outcome model: build, sample (``sampling``), diagnose with one retry, pool the
refits of ``propagation: draws`` (``pooling``), and finish the DataTree.

A fit whose diagnostics still fail after the retry is kept but ``reliable=False`` with the reasons
in ``problems``. After sampling the pointwise log-likelihood (per cell) is added for PSIS-LOO.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pymc as pm
import xarray as xr
from scipy.special import gammaln

from qialign.alignment.descriptive import standardise_over_clusters
from qialign.config import schema_defaults
from qialign.families import FAMILIES
from qialign.inference.compile_cache import configure_compile
from qialign.inference.ess_target import sample_to_ess
from qialign.inference.modes import multimodal_problem, resolve_modes, sign_starts
from qialign.inference.pooling import pool_refits
from qialign.inference.retry import sample_with_retry
from qialign.inference.sampling import compile_nutpie, sample_pymc, take_initial_values
from qialign.models.build import PREDICTIONS, build_model
from qialign.models.design import Design, build_design, nb_shape
from qialign.models.likelihood import LOG_BASE_DATA, observed_arrays
from qialign.models.spec import ModelSpec
from qialign.progress import say


@dataclass
class FitResult:
    """A fitted model: posterior DataTree plus diagnostics and the objects it came from."""

    idata: xr.DataTree
    diagnostics: dict
    reliable: bool
    problems: list[str]
    timings: dict
    retried: bool
    spec: ModelSpec
    design: Design
    model: object = None
    sampler: dict = field(default_factory=dict)
    #: quantities derived from the posterior that several tables share (draws x cells arrays),
    #: computed once by their first user (``qialign.models.estimands``); a copy with another
    #: posterior (``dataclasses.replace``) starts empty
    derived: dict = field(default_factory=dict, init=False, repr=False, compare=False)


def _softplus(x: np.ndarray) -> np.ndarray:
    """log(1 + e^x) = max(x, 0) + log1p(e^-|x|), in place on one new array: half the time of
    ``np.logaddexp(0, x)`` on 10 million draws x cells, the same to 2e-15."""
    out = np.abs(x)
    np.negative(out, out=out)
    np.exp(out, out=out)
    np.log1p(out, out=out)
    out += np.maximum(x, 0.0)
    return out


def pointwise_loglik(design: Design, posterior, spec: ModelSpec) -> np.ndarray:
    """Per-cell log-likelihood (chain, draw, cell) from stored ``eta`` draws."""
    family = spec.family
    eta = np.asarray(posterior["eta"])
    n = design.n
    if family in ("bernoulli", "binomial"):
        k = design.y["events"]
        out = _softplus(eta)
        out *= -n
        out += k * eta
        out += observed_arrays(family, k, n)[LOG_BASE_DATA]  # log C(n, k)
        return out  # k eta - n softplus(eta) + log C(n, k), as models.likelihood
    if family == "poisson":
        k = design.y["count"]
        log_mu = eta + np.log(design.y["exposure"])
        return k * log_mu - np.exp(log_mu) + observed_arrays(family, k, n)[LOG_BASE_DATA]  # -log k!
    if family == "negative_binomial":
        k = design.y["count"]
        mu = np.exp(eta + np.log(design.y["exposure"]))
        a = nb_shape(spec, n, np.asarray(posterior["phi"])[..., None])
        return (
            gammaln(k + a)
            - gammaln(a)
            - gammaln(k + 1)
            + a * (np.log(a) - np.log(a + mu))
            + k * (np.log(mu) - np.log(a + mu))
        )
    s = np.asarray(posterior["sigma"])[..., None]
    sm, ss = design.y["sum"], design.y["sumsq"]
    return -0.5 * n * np.log(2 * np.pi * s**2) - (ss - 2 * eta * sm + n * eta**2) / (2 * s**2)


def _observed(design: Design) -> xr.Dataset:
    """The cells' outcome totals (events, count or sum of y: the family's ``total_column``)."""
    y = design.y[FAMILIES[design.family].total_column]
    return xr.Dataset({"y": ("cell", y)}, coords={"cell": np.arange(design.n_cells)})


def _finish_idata(idata, model, design: Design, spec: ModelSpec) -> xr.DataTree:
    idata = with_predictions(idata, model)  # the kept draws only (refits add theirs before pooling)
    post = idata["posterior"]
    if "eta" in post.data_vars:
        ll = pointwise_loglik(design, post, spec)
        ds = xr.Dataset(
            {"y": (("chain", "draw", "cell"), ll)},
            coords={"chain": post["chain"], "draw": post["draw"], "cell": np.arange(ll.shape[-1])},
        )
        idata["log_likelihood"] = xr.DataTree(ds)
    else:  # predictions not stored (very many cells): let PyMC compute it
        idata = pm.compute_log_likelihood(idata, model=model, progressbar=False)
    # per-draw log prior of every free variable: power-scaling prior sensitivity (qialign.robustness)
    idata = pm.stats.compute_log_prior(idata, model=model, progressbar=False)
    if "observed_data" not in idata.children:
        idata["observed_data"] = xr.DataTree(_observed(design))
    idata.attrs.update(
        {
            "qialign_model": json.dumps(spec.to_dict()),
            "family": spec.family,
            "link": spec.link,
            "y_center": design.y_center,
            "y_scale": design.y_scale,
        }
    )
    return idata


def stored_per_draw(model) -> list[str]:
    """The variables nutpie stores at every draw: all but the per-cell ``PREDICTIONS``."""
    return [v.name for v in model.free_RVs + model.deterministics if v.name not in PREDICTIONS]


def with_predictions(idata, model, A: np.ndarray | None = None):
    """The draws with the model's per-cell ``PREDICTIONS`` added, computed from them in one
    vectorised evaluation (alignment data ``A`` when a refit swapped it). On the 12 x 10 reference
    trial (3,984 cells, 4,000 draws) this takes 0.15 s, where nutpie storing them at every draw
    cost 1.4 s of 8.3 s of sampling, and copies of them at every ESS checkpoint."""
    names = [v for v in PREDICTIONS if v in model.named_vars and v not in idata["posterior"]]
    if not names:
        return idata
    plugin = model["alignment_z"].get_value() if A is not None else None
    try:
        if A is not None:
            model.set_data("alignment_z", A)
        post = pm.compute_deterministics(
            idata["posterior"].to_dataset(),
            var_names=names,
            model=model,
            extend_dataset=True,  # adds them to this copy of the posterior
            progressbar=False,
            compile_kwargs={"mode": "FAST_RUN"},  # C kernels, cached on disk for every structure
        )
    finally:
        if plugin is not None:
            model.set_data("alignment_z", plugin)
    idata["posterior"] = xr.DataTree(post)
    return idata


class _Sampler:
    """``sample(settings, seed, A=None) -> (idata, compile_s, sample_s)`` for one model: PyMC's NUTS
    or nutpie (compiled once, on first use; ``A`` swaps the standardised alignment data).

    ``starts`` holds one start (name -> value) or, for the joint model, one per sign of gamma
    (``qialign.inference.modes.sign_starts``): the chains are split between them and chains that
    settled in a minor mode of gamma are dropped before the diagnostics (``resolve_modes``)."""

    def __init__(self, model, engine: str, n_cells: int, starts: list[dict], th: dict, joint: bool = False):
        self.model, self.engine, self.n_cells = model, engine, n_cells
        self.starts, self.compiled, self.th = starts, None, th
        self.joint, self.modes = joint, None

    def _resolve(self, idata):
        idata, self.modes = resolve_modes(idata)
        return idata

    def __call__(self, settings: dict, seed: int, A: np.ndarray | None = None, th: dict | None = None):
        say(
            f"{self.engine}: {settings['chains']} chains x ({settings['tune']} tune + up to "
            f"{settings['draws']} draws), target_accept {settings['target_accept']:.2f}, {self.n_cells} cells"
            + (", compiling first" if self.compiled is None and self.engine == "nutpie" else "")
        )
        n_parts = max(1, min(len(self.starts), int(settings["chains"])))
        if self.engine == "pymc":
            if A is not None:
                self.model.set_data("alignment_z", A)
            per_chain = [self.starts[k % n_parts] for k in range(int(settings["chains"]))]
            start = per_chain if n_parts > 1 else self.starts[0]
            idata, c, t = sample_pymc(self.model, settings, seed, start)
            idata = self._resolve(idata) if self.joint else idata
        else:
            t0 = time.perf_counter()
            if self.compiled is None:
                stored = stored_per_draw(self.model)
                self.compiled = [compile_nutpie(self.model, start, stored) for start in self.starts]
            t1 = time.perf_counter()
            parts = [m if A is None else m.with_data(alignment_z=A) for m in self.compiled[:n_parts]]
            resolve = self._resolve if self.joint else None
            idata = sample_to_ess(parts, settings, th or self.th, seed, resolve)
            c, t = t1 - t0, time.perf_counter() - t1
        say(f"compiled in {c:.1f} s, sampled in {t:.1f} s")
        if note := (self.modes or {}).get("note"):
            say(note)
        return idata, c, t


def _sample_over_draws(sample: _Sampler, draws: np.ndarray, s: dict, th: dict, seed: int, clusters) -> dict:
    """``propagation: draws``: K refits, refit k on the standardised alignment draw k with
    ceil(draws / K) (at least 100) draws and seed + 7919 k, ESS thresholds divided by K; pooled."""
    K = len(draws)
    A = np.array([standardise_over_clusters(np.asarray(a, float)) for a in draws])
    per = {**s, "draws": max(100, -(-int(s["draws"]) // K))}
    per["draws_min"] = per["draws"]  # fixed length: the refits are pooled as chains of one trace
    th_k = {**th, "ess_bulk_min": th["ess_bulk_min"] / K, "ess_tail_min": th["ess_tail_min"] / K}
    runs = [
        sample_with_retry(
            lambda st, sd, a=A[k]: sample(st, sd, a, th_k), per, th_k, seed + 7919 * k, f"draw {k + 1}/{K}: "
        )
        for k in range(K)
    ]
    for k, run in enumerate(runs):  # each refit's predictions with its own alignment draw
        run["idata"] = with_predictions(run["idata"], sample.model, A[k])
    return pool_refits(runs, A, clusters, th)


def _flag_modes(result: dict, modes: dict | None) -> None:
    """A joint fit records how its chains' modes of gamma were resolved (``qialign.inference.modes``);
    one whose modes could not be told apart is unreliable, and says so."""
    if modes is None:
        return
    result["details"]["gamma_modes"] = modes
    if modes["multimodal"]:
        result["ok"] = False
        result["problems"].append(multimodal_problem(modes))


def fit_model(
    cells: pd.DataFrame,
    spec: ModelSpec,
    *,
    alignment: pd.Series | None = None,
    alignment_draws: np.ndarray | None = None,
    latent=None,
    sampler: dict | None = None,
    diagnostics: dict | None = None,
    seed: int = 0,
) -> FitResult:
    """Build, sample, diagnose (with one retry) and return a FitResult.

    ``sampler`` overrides ``spec.sampler`` key by key; ``diagnostics`` are the thresholds.
    Alignment enters as ``alignment`` (raw score per cluster; ``propagation: plugin``), plus either
    ``alignment_draws`` (K x clusters raw posterior draws, columns in sorted cluster order:
    ``draws``, K refits each standardising its own draw, posteriors pooled) or ``latent`` =
    (SurveyData, wave index) (``joint``: one graph with the survey's measurement model, chains
    started on both signs of gamma; chains in a minor mode of gamma are dropped, modes that cannot be told
    apart are a problem, see ``qialign.inference.modes``).
    """
    configure_compile()
    s = {**spec.sampler, **(sampler or {})}
    th = {**schema_defaults("diagnostics"), **(diagnostics or {})}
    design = build_design(cells, spec, alignment)
    use_draws = alignment_draws is not None and design.A is not None
    model = build_model(design, spec, latent=latent if design.A is not None else None)
    engine = s["engine"]
    # every chain starts jittered (the survey cutpoints at their own fixed start); a joint model's
    # chains start half at gamma = +prior SD, half at -prior SD: see qialign.inference.modes
    joint = latent is not None and design.A is not None
    start = take_initial_values(model)
    starts = sign_starts(start, spec.priors["interaction_sd"]) if joint else [start]
    sample = _Sampler(model, engine, len(cells), starts, th, joint)
    if use_draws:
        result = _sample_over_draws(sample, alignment_draws, s, th, seed, design.clusters)
    else:
        result = sample_with_retry(sample, s, th, seed)
    if joint:
        _flag_modes(result, sample.modes)
    return FitResult(
        idata=_finish_idata(result["idata"], model, design, spec),
        diagnostics=result["details"],
        reliable=result["ok"],
        problems=result["problems"],
        timings=result["timings"],
        retried=result["retried"],
        spec=spec,
        design=design,
        model=model,
        sampler=result["sampler"],
    )
