"""A temporary copy of the workflow with the tiny simulated trial's data, for the tests that run
Snakemake end to end (test_workflow.py, test_slurm.py)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def tiny_project(work: Path, spec: Path = ROOT / "tests/data/tiny_sim.yaml") -> Path:
    """Copy Snakefile, workflow/ and src/ into ``work``, simulate ``spec`` (default
    tests/data/tiny_sim.yaml) into ``work/data`` and return that folder."""
    for item in ("Snakefile", "workflow", "src"):
        src = ROOT / item
        (shutil.copytree if src.is_dir() else shutil.copy)(src, work / item)
    data = work / "data"
    sim = subprocess.run(
        [str(BIN / "qialign"), "simulate", str(spec), "--out", str(data)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert sim.returncode == 0, sim.stderr
    return data
