"""What produced a result: package versions, git commit, data hashes, seed and config.

Data hashes come from :func:`qialign.data.io.sha256_file` when the tables are read.
"""

from __future__ import annotations

import platform
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

PACKAGES = ("qialign", "pymc", "pytensor", "nutpie", "arviz", "numpy", "pandas", "scipy", "statsmodels")


def package_versions() -> dict[str, str]:
    """Installed versions of the packages that shape a result (and Python's)."""
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


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
        "git_commit": git_commit(),
    }
