"""Compiling and sampling a PyMC model: nutpie (default) or PyMC's NUTS, timed.

Compile and sampling are timed separately (nutpie: ``compile_pymc_model`` vs ``sample``; PyMC:
building the NUTS step, which compiles logp and gradient, vs ``pm.sample``). Both compile after
:func:`~qialign.inference.compile_cache.configure_compile`.

``cores`` in the sampler settings is what reaches the sampler (``qialign fit --threads`` caps it).
"""

from __future__ import annotations

import time
import warnings

from qialign.inference.compile_cache import cache_root, configure_compile
from qialign.progress import say

# nutpie and PyMC are imported inside the functions that need them, so that importing this module
# (the CLI, the alignment step's descriptive path) stays light


def nutpie_sample(compiled, s: dict, seed: int):
    """Sample a compiled nutpie model with sampler settings ``s`` (draws, tune, chains, cores,
    target_accept); warmup is not kept. Shared by the outcome models, the latent alignment model
    and the simulation studies."""
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


def compile_nutpie(model, start: dict | None = None, var_names=None):
    """Compile for nutpie, once per model structure (:mod:`~qialign.inference.structure_cache`):
    dims are frozen but those only data have (the cells), data stay arguments, so
    ``compiled.with_data(name=...)`` swaps any data array (``propagation: draws`` swaps alignment)
    and other data of the same shapes but for the cells' count reuse the compiled code, in this
    process or, from the cache on disk, in later ones. ``start`` (name -> value) fixes
    those variables' initial values, unjittered; the others start at their support point with
    nutpie's usual jitter. ``var_names``: the variables stored per draw (None: all)."""
    from pymc.model.transform.optimization import freeze_dims_and_data

    from qialign.inference.structure_cache import compile_by_structure, data_only_dims

    configure_compile()
    open_dims = data_only_dims(model, var_names)  # the cells' count stays an argument
    frozen = freeze_dims_and_data(model, dims=[d for d in model.coords if d not in open_dims], data=[])
    start = start or {}
    jitter = {rv for rv in frozen.free_RVs if rv.name not in start}
    try:
        compiled, info = compile_by_structure(
            frozen, start or None, jitter, cache_root() / "nutpie", var_names
        )
    except ValueError as exc:  # data outside pm.Data (e.g. a bare shared y): nutpie's own way
        say(f"nutpie model compiled per process ({exc})")
        import nutpie

        return nutpie.compile_pymc_model(
            frozen, initial_points=start or None, jitter_rvs=jitter, var_names=var_names
        )
    say(f"nutpie model {info.key[:12]}: wrappers {info.source}")
    return compiled


def take_initial_values(model) -> dict:
    """Move the model's own initial values (the survey's ordered cutpoints, ``initval=``) out of
    the model into a start (name -> value) for the sampler: PyMC's model transforms (``pm.do``,
    ``pm.observe``, ``compute_log_prior``) cannot copy a model that has them."""
    start = {rv.name: v for rv, v in model.rvs_to_initial_values.items() if v is not None}
    for rv in model.rvs_to_initial_values:
        model.rvs_to_initial_values[rv] = None
    return start


def sample_pymc(model, s: dict, seed: int, start: dict | list[dict] | None = None):
    """PyMC's own NUTS from ``start`` (name -> value, or one such dict per chain; the rest PyMC's
    default initial point); returns (idata, compile seconds, sampling seconds)."""
    import pymc as pm

    configure_compile()
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
            initvals=start or None,
            nuts_sampler="pymc",
            progressbar=False,
            compute_convergence_checks=False,
        )
    t2 = time.perf_counter()
    return idata, t1 - t0, t2 - t1
