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

from qialign.config import schema_defaults
from qialign.models.build import build_model
from qialign.models.design import Design, build_design, nb_shape
from qialign.models.diagnostics import diagnose
from qialign.models.spec import ModelSpec


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
            cores=int(s["cores"]),
            seed=int(seed),
            target_accept=float(s["target_accept"]),
            progress_bar=False,
            save_warmup=False,
        )


def compile_nutpie(model, mutable: tuple[str, ...] = (), start: dict | None = None):
    """Compile for nutpie. Data are frozen into the graph except ``mutable`` ones, which stay
    settable with ``compiled.with_data`` (``propagation: draws`` swaps alignment without
    recompiling). ``start`` (name -> value) fixes those variables' initial values, unjittered;
    the others start at their support point with nutpie's usual jitter.

    Why freeze: nutpie 0.16 wraps the compiled logp in a numba cfunc that is recompiled in every
    process (its closure holds a dispatcher whose pickle carries a random uuid, so ``cache=True``
    never hits), and every shared variable adds an extraction routine to that wrapper: with the ~10
    data arrays of this model the wrapper took about twice as long to compile as with none. The
    frozen logp graph itself comes from PyTensor's numba cache when the same cells are fitted again.
    """
    import nutpie
    from pymc.model.transform.optimization import freeze_dims_and_data

    frozen = freeze_dims_and_data(model, data=[v.name for v in model.data_vars if v.name not in mutable])
    start = start or {}
    return nutpie.compile_pymc_model(
        frozen,
        freeze_model=False,
        initial_points=start or None,
        jitter_rvs={rv for rv in frozen.free_RVs if rv.name not in start},
    )


def plugin_start(design: Design, spec: ModelSpec) -> dict:
    """Starting value of ``alignment_interaction`` for a joint model: the plugin model's MAP.

    With a small survey the joint posterior has a second, reflected mode (gamma of the other sign,
    alignment pattern reversed and compressed) separated by a low-density ridge at gamma = 0; the
    survey favours the right one but a chain started at random can stay in either. Starting gamma
    at the plugin estimate (the survey's own ordering) puts every chain in the survey-consistent
    mode; R-hat still flags chains that disagree.
    """
    import pymc as pm

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        point = pm.find_MAP(
            model=build_model(design, spec), progressbar=False, compile_kwargs={"mode": "FAST_RUN"}
        )
    return {"alignment_interaction": float(point["alignment_interaction"])}


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
            cores=int(s["cores"]),
            random_seed=int(seed),
            step=step,
            nuts_sampler="pymc",
            progressbar=False,
            compute_convergence_checks=False,
        )
    t2 = time.perf_counter()
    return idata, t1 - t0, t2 - t1


def pointwise_loglik(design: Design, posterior, spec: ModelSpec) -> np.ndarray:
    """Per-cell log-likelihood (chain, draw, cell) from stored ``eta`` draws."""
    family = spec.family
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
    key = {"bernoulli": "events", "binomial": "events", "gaussian": "sum", "lognormal": "sum"}
    y = design.y[key.get(design.family, "count")]
    return xr.Dataset({"y": ("cell", y)}, coords={"cell": np.arange(design.n_cells)})


def _finish_idata(idata, model, design: Design, spec: ModelSpec) -> xr.DataTree:
    post = idata["posterior"]
    if "eta" in post.data_vars:
        ll = pointwise_loglik(design, post, spec)
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


def _standardise(a: np.ndarray) -> np.ndarray:
    return (a - a.mean()) / a.std(ddof=1)


def _sample_with_retry(sample, s: dict, th: dict, seed: int, label: str = "") -> dict:
    """``sample(settings, seed) -> (idata, compile_s, sample_s)``, diagnosed, retried once if asked:
    target_accept = min(0.99, max(0.95, target_accept + 0.05)), twice the tuning, seed + 1."""
    idata, compile_s, sample_s = sample(s, seed)
    ok, problems, details = diagnose(idata, th)
    progress(f"{label}diagnostics pass" if ok else f"{label}diagnostics fail: {'; '.join(problems)}")
    attempts = [{"target_accept": s["target_accept"], "tune": s["tune"], "problems": problems}]
    retried = False
    if not ok and th["retry"]:
        retried = True
        s = {
            **s,
            "target_accept": min(0.99, max(0.95, float(s["target_accept"]) + 0.05)),
            "tune": 2 * int(s["tune"]),
        }
        idata, c2, t2 = sample(s, seed + 1)
        compile_s += c2
        sample_s += t2
        ok, problems, details = diagnose(idata, th)
        progress(
            f"{label}retry: diagnostics pass"
            if ok
            else f"{label}retry: still failing, marked unreliable: {'; '.join(problems)}"
        )
        attempts.append({"target_accept": s["target_accept"], "tune": s["tune"], "problems": problems})
    details["attempts"] = attempts
    return {
        "idata": idata,
        "ok": ok,
        "problems": list(problems),
        "details": details,
        "retried": retried,
        "timings": {"compile_s": compile_s, "sample_s": sample_s},
        "sampler": s,
    }


def _pool(runs: list[dict], A: np.ndarray, clusters: list[str], th: dict) -> dict:
    """Pool the refits of ``propagation: draws`` into one posterior (refit k's chains follow refit
    k-1's) and one set of diagnostics.

    The pooled posterior is the equal-weight mixture over alignment draws (the method of
    composition). Each refit is checked on its own (R-hat within a refit; between refits the
    posteriors differ by design); the pooled bulk/tail ESS of a parameter is the sum over refits,
    divergences are summed, E-BFMI is per chain of every refit. The alignment each draw used is
    stored as ``alignment_z`` (chain, draw, cluster).
    """
    posts, stats = [], []
    offset = 0
    for k, run in enumerate(runs):
        post = run["idata"]["posterior"].to_dataset()
        n_chain, n_draw = post.sizes["chain"], post.sizes["draw"]
        post["alignment_z"] = (
            ("chain", "draw", "cluster"),
            np.broadcast_to(A[k], (n_chain, n_draw, len(A[k]))),
        )
        chains = np.arange(offset, offset + n_chain)
        posts.append(post.assign_coords(chain=chains, cluster=clusters))
        stats.append(run["idata"]["sample_stats"].to_dataset().assign_coords(chain=chains))
        offset += n_chain
    idata = xr.DataTree.from_dict(
        {"posterior": xr.concat(posts, dim="chain"), "sample_stats": xr.concat(stats, dim="chain")}
    )
    summ = pd.DataFrame(az_summary(idata))
    per = [run["details"]["summary"] for run in runs]
    summ["r_hat"] = pd.concat([t["r_hat"] for t in per], axis=1).max(axis=1)
    for col in ("ess_bulk", "ess_tail"):
        summ[col] = pd.concat([t[col] for t in per], axis=1).sum(axis=1)
    summ["mcse_mean"] = summ["sd"] / np.sqrt(summ["ess_bulk"])
    div = sum(run["details"]["divergences"] for run in runs)
    bfmi = [b for run in runs for b in run["details"]["ebfmi"]]
    n_draws = idata["posterior"].sizes["chain"] * idata["posterior"].sizes["draw"]
    details = {
        "summary": summ,
        "divergences": div,
        "divergence_rate": div / n_draws,
        "ebfmi": bfmi,
        "r_hat_max": float(summ["r_hat"].max()),
        "ess_bulk_min": float(summ["ess_bulk"].min()),
        "ess_tail_min": float(summ["ess_tail"].min()),
        "mcse_mean_max": float(summ["mcse_mean"].max()),
        "thresholds": th,
        "attempts": [a for run in runs for a in run["details"]["attempts"]],
        "refits": len(runs),
    }
    problems = [f"alignment draw {k}: {p}" for k, run in enumerate(runs) for p in run["problems"]]
    if div > th["divergences_max"]:
        problems.append(f"{div} divergent transition(s) over {len(runs)} refits > {th['divergences_max']}")
    if not details["ess_bulk_min"] >= th["ess_bulk_min"]:
        problems.append(f"pooled bulk ESS {details['ess_bulk_min']:.0f} < {th['ess_bulk_min']}")
    return {
        "idata": idata,
        "ok": not problems,
        "problems": problems,
        "details": details,
        "retried": any(run["retried"] for run in runs),
        "timings": {k: sum(run["timings"][k] for run in runs) for k in ("compile_s", "sample_s")},
        "sampler": runs[0]["sampler"],
    }


def az_summary(idata) -> pd.DataFrame:
    import arviz as az

    from qialign.models.diagnostics import reported_vars

    return az.summary(idata, var_names=reported_vars(idata), ci_prob=0.95, round_to="none")


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
    started at the plugin estimate of gamma, see ``plugin_start``).
    """
    s = {**spec.sampler, **(sampler or {})}
    th = {**schema_defaults("diagnostics"), **(diagnostics or {})}
    design = build_design(cells, spec, alignment)
    use_draws = alignment_draws is not None and design.A is not None
    model = build_model(design, spec, latent=latent if design.A is not None else None)
    compiled = None
    engine = s["engine"]
    # a joint model's chains start at the plugin MAP of gamma (only nutpie takes a start)
    joint = latent is not None and design.A is not None and engine == "nutpie"
    start = plugin_start(design, spec) if joint else None
    mutable = ("alignment_z",) if use_draws else ()

    def sample(settings, sd, A=None):
        nonlocal compiled
        progress(
            f"{engine}: {settings['chains']} chains x ({settings['tune']} tune + {settings['draws']} draws), "
            f"target_accept {settings['target_accept']:.2f}, {len(cells)} cells"
            + (", compiling first" if compiled is None and engine == "nutpie" else "")
        )
        if engine == "pymc":
            if A is not None:
                model.set_data("alignment_z", A)
            idata, c, t = _sample_pymc(model, settings, sd)
        else:
            t0 = time.perf_counter()
            if compiled is None:
                compiled = compile_nutpie(model, mutable, start)
            t1 = time.perf_counter()
            idata = nutpie_sample(compiled if A is None else compiled.with_data(alignment_z=A), settings, sd)
            c, t = t1 - t0, time.perf_counter() - t1
        progress(f"compiled in {c:.1f} s, sampled in {t:.1f} s")
        return idata, c, t

    if use_draws:
        K = len(alignment_draws)
        A = np.array([_standardise(np.asarray(a, float)) for a in alignment_draws])
        per = {**s, "draws": max(100, -(-int(s["draws"]) // K))}
        th_k = {**th, "ess_bulk_min": th["ess_bulk_min"] / K, "ess_tail_min": th["ess_tail_min"] / K}
        th_k["divergences_max"] = th["divergences_max"]
        runs = [
            _sample_with_retry(
                lambda st, sd, a=A[k]: sample(st, sd, a), per, th_k, seed + 7919 * k, f"draw {k + 1}/{K}: "
            )
            for k in range(K)
        ]
        result = _pool(runs, A, design.clusters, th)
    else:
        result = _sample_with_retry(sample, s, th, seed)
    idata = _finish_idata(result["idata"], model, design, spec)
    return FitResult(
        idata=idata,
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
