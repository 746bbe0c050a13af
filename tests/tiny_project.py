"""A temporary copy of the workflow with the tiny simulated trial's data, for the tests that run
Snakemake end to end (test_workflow.py, test_slurm.py)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


#: what a workflow copy needs: the Snakefile, its rules, the package source and the default profile
PROJECT_ITEMS = ("Snakefile", "workflow", "src", "profiles")


def copy_project(work: Path) -> Path:
    """Copy the workflow (``PROJECT_ITEMS``) into ``work``; return ``work``."""
    for item in PROJECT_ITEMS:
        src = ROOT / item
        (shutil.copytree if src.is_dir() else shutil.copy)(src, work / item)
    return work


def tiny_project(work: Path, spec: Path = ROOT / "tests/data/tiny_sim.yaml") -> Path:
    """Copy the workflow into ``work``, simulate ``spec`` (default tests/data/tiny_sim.yaml) into
    ``work/data`` and return that folder."""
    copy_project(work)
    data = work / "data"
    sim = subprocess.run(
        [str(BIN / "qialign"), "simulate", str(spec), "--out", str(data)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert sim.returncode == 0, sim.stderr
    return data
