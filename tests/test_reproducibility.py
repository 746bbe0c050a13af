"""Same seed, same data, same code: same numbers, whatever the state of the compile cache.

A published report must be reproducible from a fresh clone (empty cache) and from a machine whose
cache other fits already filled. Each fit runs the real ``qialign fit`` step in a fresh process on
the Sicily ITS data (few draws); the first starts from an empty cache directory, the second reuses
the cache the first left, and their outputs must match byte for byte.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from qialign.steps.prepare import prepare_outcome
from sim_pipeline import shipped_sicily

QIALIGN = Path(sys.executable).parent / "qialign"
SAMPLER = {"chains": 2, "draws": 150, "tune": 150, "cores": 1}


@pytest.fixture(scope="module")
def trial(tmp_path_factory) -> dict:
    """The shipped Sicily config (its model only, few draws) with absolute data paths, prepared."""
    tmp = tmp_path_factory.mktemp("repro")
    config, _ = shipped_sicily(tmp / "sicily.yaml", sampler=SAMPLER, diagnostics={"retry": False})
    prepare_outcome(config, "aces", tmp / "prepared")
    return {"tmp": tmp, "config": config, "cache": tmp / "cache"}


def _fit(trial: dict, name: str) -> Path:
    """``qialign fit`` in a fresh process whose only compile cache is ``trial['cache']``."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTENSOR_FLAGS", "NUMBA_CACHE_DIR")}
    env["QIALIGN_CACHE_DIR"] = str(trial["cache"])
    out = trial["tmp"] / name
    cmd = [str(QIALIGN), "fit", str(trial["config"]), "--outcome", "aces", "--model", "its"]
    cmd += ["--prepared", str(trial["tmp"] / "prepared"), "--scores", str(trial["tmp"] / "none.csv")]
    proc = subprocess.run(
        [*cmd, "--out-dir", str(out)], env=env, cwd=trial["tmp"], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out


def test_cold_and_warm_cache_give_identical_estimates(trial):
    assert not trial["cache"].exists()
    cold = _fit(trial, "cold")
    kernels = list(trial["cache"].rglob("*.nbi"))
    assert kernels, "the first fit left no compiled kernels in the cache"
    warm = _fit(trial, "warm")
    for table in ("estimates.csv", "diagnostics.csv", "cluster_effects.csv"):
        assert (cold / table).read_bytes() == (warm / table).read_bytes(), f"{table} differs"
    cold_rec, warm_rec = (json.loads((d / "fit.json").read_text()) for d in (cold, warm))
    # the warm fit really reused the cache (else this test would compare two cold compiles)
    assert warm_rec["timings"]["compile_s"] < cold_rec["timings"]["compile_s"]
    assert cold_rec["reproducibility"] == warm_rec["reproducibility"]


def test_fit_record_names_what_reproducibility_depends_on(trial):
    if not (trial["tmp"] / "cold" / "fit.json").exists():
        _fit(trial, "cold")
    rec = json.loads((trial["tmp"] / "cold" / "fit.json").read_text())["reproducibility"]
    for key in ("python", "platform", "machine", "pymc", "pytensor", "nutpie", "numba", "numpy"):
        assert rec[key] and rec[key] != "not installed", key
    assert rec["numba_fastmath"] is False
