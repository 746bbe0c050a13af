"""Sampling: nutpie (default) or PyMC's NUTS, diagnostics, one automatic retry, timings.

Compile and sampling are timed separately (nutpie: ``compile_pymc_model`` vs ``sample``; PyMC:
building the NUTS step, which compiles logp and gradient, vs ``pm.sample``). When diagnostics fail
and ``diagnostics.retry`` is true, the model is sampled once more (same compiled model) with
target_accept = min(0.99, max(0.95, target_accept + 0.05)), twice the tuning and seed + 1; if it
still fails the fit is kept but ``reliable=False`` with the reasons in ``problems``.

After sampling the pointwise log-likelihood (per cell) is added to the DataTree for PSIS-LOO.
"""

from __future__ import annotations

import json
import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import xarray as xr
from scipy.special import gammaln, log_expit

from qialign.models.build import build_model
from qialign.models.design import Design, build_design
from qialign.models.diagnostics import diagnose
from qialign.models.spec import DIAGNOSTIC_DEFAULTS, ModelSpec


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


def nutpie_sample(compiled, s: dict, seed: int):
    """Sample a compiled nutpie model with sampler settings ``s`` (draws, tune, chains, cores,
    target_accept); warmup is not kept. Shared by the outcome models and the latent alignment model."""
    import nutpie

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return nutpie.sample(
            compiled,
            draws=int(s["draws"]),
            tune=int(s["tune"]),
            chains=int(s["chains"]),
            cores=int(s.get("cores", 2)),
            seed=int(seed),
            target_accept=float(s["target_accept"]),
            progress_bar=False,
            save_warmup=False,
        )


def _sample_nutpie(model, s: dict, seed: int, compiled=None):
    import nutpie

    t0 = time.perf_counter()
    if compiled is None:
        # freeze_model: the pm.Data arrays become constants of the graph. nutpie 0.16 wraps the
        # compiled logp in a numba cfunc that is recompiled in every process (its closure holds a
        # dispatcher whose pickle carries a random uuid, so ``cache=True`` never hits), and every
        # shared variable adds an extraction routine to that wrapper: with the ~10 data arrays of
        # this model the wrapper took about twice as long to compile as with none. The frozen
        # logp graph itself comes from PyTensor's numba cache when the same cells are fitted again.
        compiled = nutpie.compile_pymc_model(model, freeze_model=True)
    t1 = time.perf_counter()
    idata = nutpie_sample(compiled, s, seed)
    t2 = time.perf_counter()
    return idata, t1 - t0, t2 - t1, compiled


def _sample_pymc(model, s: dict, seed: int):
    import pymc as pm

    t0 = time.perf_counter()
    with model:
        step = pm.NUTS(target_accept=float(s["target_accept"]))
    t1 = time.perf_counter()
    with model, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        idata = pm.sample(
            draws=int(s["draws"]),
            tune=int(s["tune"]),
            chains=int(s["chains"]),
            cores=int(s.get("cores", 2)),
            random_seed=int(seed),
            step=step,
            nuts_sampler="pymc",
            progressbar=False,
            compute_convergence_checks=False,
        )
    t2 = time.perf_counter()
    return idata, t1 - t0, t2 - t1


def pointwise_loglik(design: Design, posterior, family: str) -> np.ndarray:
    """Per-cell log-likelihood (chain, draw, cell) from stored ``eta`` draws."""
    eta = np.asarray(posterior["eta"])
    n = design.n
    if family in ("bernoulli", "binomial"):
        k = design.y["events"]
        const = gammaln(n + 1) - gammaln(k + 1) - gammaln(n - k + 1)
        return const + k * log_expit(eta) + (n - k) * log_expit(-eta)
    if family == "poisson":
        k = design.y["count"]
        log_mu = eta + np.log(design.y["exposure"])
        return k * log_mu - np.exp(log_mu) - gammaln(k + 1)
    if family == "negative_binomial":
        k = design.y["count"]
        mu = np.exp(eta + np.log(design.y["exposure"]))
        a = n * np.asarray(posterior["phi"])[..., None]
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
    key = {"bernoulli": "events", "binomial": "events", "gaussian": "sum", "lognormal": "sum"}
    y = design.y[key.get(design.family, "count")]
    return xr.Dataset({"y": ("cell", y)}, coords={"cell": np.arange(design.n_cells)})


def _finish_idata(idata, model, design: Design, spec: ModelSpec) -> xr.DataTree:
    post = idata["posterior"]
    if "eta" in post.data_vars:
        ll = pointwise_loglik(design, post, spec.family)
        ds = xr.Dataset(
            {"y": (("chain", "draw", "cell"), ll)},
            coords={"chain": post["chain"], "draw": post["draw"], "cell": np.arange(ll.shape[-1])},
        )
        idata["log_likelihood"] = xr.DataTree(ds)
    else:  # predictions not stored (very many cells): let PyMC compute it
        import pymc as pm

        idata = pm.compute_log_likelihood(idata, model=model, progressbar=False)
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


def progress(message: str) -> None:
    """One progress line in the step's log (flushed, so a long fit can be followed with tail -f)."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def fit_model(
    cells: pd.DataFrame,
    spec: ModelSpec,
    *,
    alignment: pd.Series | None = None,
    sampler: dict | None = None,
    diagnostics: dict | None = None,
    seed: int = 0,
) -> FitResult:
    """Build, sample, diagnose (with one retry) and return a FitResult.

    ``sampler`` overrides ``spec.sampler`` key by key; ``diagnostics`` are the thresholds.
    """
    s = {**spec.sampler, **(sampler or {})}
    th = {**DIAGNOSTIC_DEFAULTS, **(diagnostics or {})}
    design = build_design(cells, spec, alignment)
    model = build_model(design, spec)
    compiled = None
    engine = s.get("engine", "nutpie")

    def run(settings, sd):
        nonlocal compiled
        progress(
            f"{engine}: {settings['chains']} chains x ({settings['tune']} tune + {settings['draws']} draws), "
            f"target_accept {settings['target_accept']:.2f}, {len(cells)} cells"
            + (", compiling first" if compiled is None and engine == "nutpie" else "")
        )
        if engine == "pymc":
            idata, c, t = _sample_pymc(model, settings, sd)
        else:
            idata, c, t, compiled = _sample_nutpie(model, settings, sd, compiled)
        progress(f"compiled in {c:.1f} s, sampled in {t:.1f} s")
        return idata, c, t

    idata, compile_s, sample_s = run(s, seed)
    ok, problems, details = diagnose(idata, th)
    progress("diagnostics pass" if ok else f"diagnostics fail: {'; '.join(problems)}")
    attempts = [{"target_accept": s["target_accept"], "tune": s["tune"], "problems": problems}]
    retried = False
    if not ok and th.get("retry", True):
        retried = True
        s = {
            **s,
            "target_accept": min(0.99, max(0.95, float(s["target_accept"]) + 0.05)),
            "tune": 2 * int(s["tune"]),
        }
        idata, c2, t2 = run(s, seed + 1)
        compile_s += c2
        sample_s += t2
        ok, problems, details = diagnose(idata, th)
        progress(
            "retry: diagnostics pass"
            if ok
            else f"retry: still failing, marked unreliable: {'; '.join(problems)}"
        )
        attempts.append({"target_accept": s["target_accept"], "tune": s["tune"], "problems": problems})
    details["attempts"] = attempts
    idata = _finish_idata(idata, model, design, spec)
    return FitResult(
        idata=idata,
        diagnostics=details,
        reliable=ok,
        problems=list(problems),
        timings={"compile_s": compile_s, "sample_s": sample_s},
        retried=retried,
        spec=spec,
        design=design,
        model=model,
        sampler=s,
    )
