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

from qialign.models.checks import compare_loo, posterior_predictive_check, prior_predictive_check  # noqa: E402
from qialign.models.estimands import cluster_effects, counterfactual, estimates  # noqa: E402
from qialign.models.fit import FitResult, fit_model  # noqa: E402
from qialign.models.io import load_posterior, save_posterior  # noqa: E402
from qialign.models.spec import ModelSpec  # noqa: E402

__all__ = [
    "FitResult",
    "ModelSpec",
    "cluster_effects",
    "compare_loo",
    "counterfactual",
    "estimates",
    "fit_model",
    "load_posterior",
    "posterior_predictive_check",
    "prior_predictive_check",
    "save_posterior",
]
