"""Bayesian hierarchical outcome models (DESIGN §4) on cluster-period sufficient statistics.

Importing this package points PyTensor's compile cache (and numba's) at a persistent directory,
``$QIALIGN_CACHE_DIR`` or ``./.cache``, unless ``PYTENSOR_FLAGS`` / ``NUMBA_CACHE_DIR`` are set
already, so repeated fits (many jobs, power simulations) reuse compiled graphs. This only takes
effect when PyTensor has not been imported yet in the process.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def _configure_cache() -> None:
    root = Path(os.environ.get("QIALIGN_CACHE_DIR", Path.cwd() / ".cache"))
    if "pytensor" not in sys.modules and "base_compiledir" not in os.environ.get("PYTENSOR_FLAGS", ""):
        flags = os.environ.get("PYTENSOR_FLAGS", "")
        extra = f"base_compiledir={root / 'pytensor'}"
        os.environ["PYTENSOR_FLAGS"] = f"{flags},{extra}" if flags else extra
    os.environ.setdefault("NUMBA_CACHE_DIR", str(root / "numba"))


_configure_cache()

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
