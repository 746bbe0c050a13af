"""Bayesian hierarchical outcome models (DESIGN §4) on cluster-period sufficient statistics.

Importing this package configures how PyTensor compiles, once for every fit in the process:

- its compile cache (and numba's) goes to a persistent directory, ``$QIALIGN_CACHE_DIR`` or
  ``./.cache``, unless ``PYTENSOR_FLAGS`` / ``NUMBA_CACHE_DIR`` name one already, so repeated fits
  (many jobs, power simulations) reuse compiled kernels; this only takes effect when PyTensor has not
  been imported yet in the process;
- numba fast-math is off (``numba__fastmath=False``, overriding PyTensor's default and any flag), so
  that a fit's numbers do not depend on the state of that cache. With fast-math, LLVM may reassociate
  and contract floating-point operations, and how it does so depends on the context a kernel is
  compiled in (fresh in this process, loaded from the cache, or built on kernels another model left
  there): the logp and gradient then differed in the last bits between a cold and a warm cache, and
  NUTS amplified that into different posteriors (tests/test_reproducibility.py).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def _configure_compile() -> None:
    """Persistent compile cache; fast-math off so that the cache cannot change the numbers."""
    root = Path(os.environ.get("QIALIGN_CACHE_DIR", Path.cwd() / ".cache"))
    os.environ.setdefault("NUMBA_CACHE_DIR", str(root / "numba"))
    if "pytensor" in sys.modules:  # too late for PYTENSOR_FLAGS, but not for the kernels to come
        import pytensor

        pytensor.config.numba__fastmath = False
        return
    flags = [f for f in os.environ.get("PYTENSOR_FLAGS", "").split(",") if f]
    if not any(f.strip().startswith("base_compiledir") for f in flags):
        flags.append(f"base_compiledir={root / 'pytensor'}")
    flags.append("numba__fastmath=False")  # the last occurrence of a flag wins
    os.environ["PYTENSOR_FLAGS"] = ",".join(flags)


_configure_compile()

# the public names load on first use (PEP 562), so that ``qialign.models.spec`` and the pure-numpy
# modules (design, identification) can be imported by validation without importing PyMC
_PUBLIC = {
    "compare_loo": "checks",
    "posterior_predictive_check": "checks",
    "prior_predictive_check": "checks",
    "cluster_effects": "estimands",
    "counterfactual": "estimands",
    "estimates": "estimands",
    "FitResult": "fit",
    "fit_model": "fit",
    "load_posterior": "io",
    "save_posterior": "io",
    "ModelSpec": "spec",
}
__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    if name in _PUBLIC:
        import importlib

        return getattr(importlib.import_module(f"qialign.models.{_PUBLIC[name]}"), name)
    raise AttributeError(f"module 'qialign.models' has no attribute {name!r}")
