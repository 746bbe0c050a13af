"""What produced a result: package versions, git commit, data hashes, seed and config.

Data hashes come from :func:`qialign.data.io.sha256_file` when the tables are read.
"""

from __future__ import annotations

import platform
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

PACKAGES = ("qialign", "pymc", "pytensor", "nutpie", "arviz", "numpy", "pandas", "scipy", "statsmodels")
# what compiles and samples the model: a change in any of them may change a posterior's digits
COMPILE_STACK = ("pymc", "pytensor", "nutpie", "numba", "llvmlite", "numpy")


def _versions(names: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for name in names:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


def package_versions() -> dict[str, str]:
    """Installed versions of the packages that shape a result (and Python's)."""
    return {"python": platform.python_version(), **_versions(PACKAGES)}


def reproducibility() -> dict:
    """What a fit's exact digits depend on beyond seed, data, config and code: the compile and
    sampling stack, the platform and CPU that numba compiles for, and the PyTensor flags that shape
    compiled kernels (fast-math is off so that the compile cache's state does not; see
    ``qialign.inference.compile_cache``). Identical numbers on another machine need at least the
    same record."""
    import llvmlite.binding
    from pytensor import config

    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu": llvmlite.binding.get_host_cpu_name(),
        **_versions(COMPILE_STACK),
        "numba_fastmath": bool(config.numba__fastmath),
    }


def git_commit(cwd: str | Path = ".") -> str:
    """Current commit of the working tree ('+dirty' when it has uncommitted changes), or 'unknown'."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("+dirty" if dirty else "")


def provenance(cfg: dict, files: dict, seed: int) -> dict:
    """A JSON-ready record to store with every result (netCDF attrs, report)."""
    return {
        "trial": cfg["id"],
        "seed": seed,
        "config": cfg,
        "data": files,
        "versions": package_versions(),
        "reproducibility": reproducibility(),
        "git_commit": git_commit(),
    }
