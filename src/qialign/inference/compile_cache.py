"""Where and how PyTensor compiles, set once per process by whatever starts sampling.

- the compile cache (PyTensor's and numba's) goes to a persistent directory, ``$QIALIGN_CACHE_DIR``
  or ``./.cache``, unless ``PYTENSOR_FLAGS`` / ``NUMBA_CACHE_DIR`` name one already, so repeated fits
  (many jobs, power simulations) reuse compiled kernels; the directory only takes effect when
  PyTensor has not been imported yet in the process (the CLI calls this before importing PyMC);
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

_done = False  # once per process, as a run's settings: later calls leave them alone


def cache_root() -> Path:
    """The persistent compile cache: ``$QIALIGN_CACHE_DIR`` or ``./.cache``."""
    return Path(os.environ.get("QIALIGN_CACHE_DIR", Path.cwd() / ".cache"))


def configure_compile() -> None:
    """Persistent compile cache; fast-math off so that the cache cannot change the numbers.

    Acts on its first call in the process only; call it before sampling (and, for the cache
    directory to take effect, before importing PyMC). ``qialign fit``, ``alignment`` and ``sbc``
    call it first thing; ``fit_model``, the latent model and the SBC models when they compile."""
    global _done
    if _done:
        return
    _done = True
    root = cache_root()
    os.environ.setdefault("NUMBA_CACHE_DIR", str(root / "numba"))
    if "pytensor" in sys.modules:  # too late for PYTENSOR_FLAGS, but not for the kernels to come
        sys.modules["pytensor"].config.numba__fastmath = False
        return
    flags = [f for f in os.environ.get("PYTENSOR_FLAGS", "").split(",") if f]
    if not any(f.strip().startswith("base_compiledir") for f in flags):
        flags.append(f"base_compiledir={root / 'pytensor'}")
    if flags[-1:] != ["numba__fastmath=False"]:
        flags.append("numba__fastmath=False")  # the last occurrence of a flag wins
    os.environ["PYTENSOR_FLAGS"] = ",".join(flags)
