"""Same seed, same numbers? Cold vs warm compile cache, with numba fast-math on (the old default) and off.

Each fit runs in a fresh process, as in the pipeline: first with a new empty ``QIALIGN_CACHE_DIR``
(cold), then twice with the cache it left (warm). Prints, per fast-math setting, the compile and
sampling seconds, the posterior mean of ``treatment_effect``, the max R-hat, and the largest absolute
difference of any posterior draw from the cold fit's (0 = bit-identical).

Models: ``sicily`` (the shipped ITS trial, model ``its``; negative binomial, AR(1), 59 cells) and
``binomial`` (the synthetic stepped wedge of fit_speed.py with binned covariates, about 1,000 cells).
Fast-math on is forced after ``configure_compile`` has switched it off, only here, to measure the old
behaviour.

Usage: python benchmarks/repro_cache.py [--model sicily|binomial] [--chains 2 --draws 1000 --tune 1000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def probe(model: str, fastmath: bool, sampler: dict, out: Path) -> None:
    """Fit ``model`` in this (fresh) process; write the draws (npz) and a JSON line of figures."""
    # first: point PyTensor at QIALIGN_CACHE_DIR, only possible before PyTensor is imported
    from qialign.inference.compile_cache import configure_compile

    configure_compile()
    # isort: split
    from qialign.inference.fit import fit_model
    from qialign.models.estimands import estimates
    from qialign.models.spec import ModelSpec, simulated_spec

    # isort: split
    import numpy as np
    import pandas as pd
    import pytensor

    from qialign.config import load_trial_config

    pytensor.config.numba__fastmath = fastmath
    if model == "sicily":
        from qialign.steps.prepare import prepare_outcome

        cfg = load_trial_config(ROOT / "config" / "trials" / "sicily_its.yaml")
        spec = ModelSpec.from_config(cfg["models"][0], "aces", cfg["outcomes"]["aces"], cfg)
        cwd = os.getcwd()
        os.chdir(ROOT)  # the config's data paths are relative to the project
        try:
            prepare_outcome(ROOT / "config" / "trials" / "sicily_its.yaml", "aces", out.parent / "prep")
        finally:
            os.chdir(cwd)
        cells, align = pd.read_parquet(out.parent / "prep" / "cells.parquet"), None
    else:
        sys.path.insert(0, str(ROOT / "benchmarks"))
        from fit_speed import simulate_cells

        cells, align = simulate_cells(7 * 16 * 100, "bins", seed=1)
        spec = simulated_spec("binomial", {"id": "bench"}, covariates=["age", "comorbidity"])
    fit = fit_model(cells, spec, alignment=align, sampler=sampler, diagnostics={"retry": False}, seed=3)
    post = fit.idata["posterior"].to_dataset()
    np.savez(out, **{k: post[k].values for k in post.data_vars})
    theta = estimates(fit).set_index("estimand").loc["treatment_effect"]
    figures = {**fit.timings, "theta": float(theta["estimate"]), "r_hat_max": fit.diagnostics["r_hat_max"]}
    print("FIGURES " + json.dumps(figures), flush=True)


def _run(model: str, fastmath: bool, sampler: dict, cache: str, out: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTENSOR_FLAGS", "NUMBA_CACHE_DIR")}
    env["QIALIGN_CACHE_DIR"] = cache
    cmd = [sys.executable, __file__, "--probe", str(out), "--model", model, "--fastmath", str(int(fastmath))]
    cmd += ["--sampler", json.dumps(sampler)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("FIGURES ")]
    if proc.returncode or not lines:
        sys.exit(proc.stdout + proc.stderr)
    return json.loads(lines[-1][len("FIGURES ") :])


def _max_diff(a: Path, b: Path) -> float:
    import numpy as np

    x, y = np.load(a), np.load(b)
    return max(float(np.abs(x[k] - y[k]).max()) for k in x.files)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=["sicily", "binomial"], default="sicily")
    ap.add_argument("--chains", type=int, default=2)
    ap.add_argument("--draws", type=int, default=1000)
    ap.add_argument("--tune", type=int, default=1000)
    ap.add_argument("--probe", help=argparse.SUPPRESS)
    ap.add_argument("--fastmath", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--sampler", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.probe:
        probe(args.model, bool(args.fastmath), json.loads(args.sampler), Path(args.probe))
        return 0
    sampler = {"chains": args.chains, "draws": args.draws, "tune": args.tune, "cores": 1}
    print(f"{args.model}: {sampler}, one fresh process per fit")
    print(f"{'fastmath':>8} {'cache':>8} {'compile_s':>9} {'sample_s':>8} {'theta':>20} {'r_hat':>7} vs cold")
    for fastmath in (True, False):
        with tempfile.TemporaryDirectory() as cache:
            tmp = Path(cache) / "draws"
            tmp.mkdir()
            for label in ("cold", "warm", "warm2"):
                f = _run(args.model, fastmath, sampler, str(Path(cache) / "cache"), tmp / f"{label}.npz")
                diff = _max_diff(tmp / "cold.npz", tmp / f"{label}.npz")
                print(
                    f"{'on' if fastmath else 'off':>8} {label:>8} {f['compile_s']:9.1f} {f['sample_s']:8.1f} "
                    f"{f['theta']:20.16f} {f['r_hat_max']:7.4f} {diff:.3g}",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
