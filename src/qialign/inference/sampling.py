"""Compiling and sampling a PyMC model: nutpie (default) or PyMC's NUTS, timed.

Compile and sampling are timed separately (nutpie: ``compile_pymc_model`` vs ``sample``; PyMC:
building the NUTS step, which compiles logp and gradient, vs ``pm.sample``). Both compile after
:func:`~qialign.inference.compile_cache.configure_compile`.

``cores`` in the sampler settings is what reaches the sampler (``qialign fit --threads`` caps it).
"""

from __future__ import annotations

import time
import warnings

from qialign.inference.compile_cache import configure_compile

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

    configure_compile()
    frozen = freeze_dims_and_data(model, data=[v.name for v in model.data_vars if v.name not in mutable])
    start = start or {}
    return nutpie.compile_pymc_model(
        frozen,
        freeze_model=False,
        initial_points=start or None,
        jitter_rvs={rv for rv in frozen.free_RVs if rv.name not in start},
    )


def sample_pymc(model, s: dict, seed: int):
    """PyMC's own NUTS; returns (idata, compile seconds, sampling seconds)."""
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
            nuts_sampler="pymc",
            progressbar=False,
            compute_convergence_checks=False,
        )
    t2 = time.perf_counter()
    return idata, t1 - t0, t2 - t1
