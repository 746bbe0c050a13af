"""Fit speed of the binomial outcome model (issue "Hierarchical outcome models").

Default-trial-like stepped wedge: 7 clusters in 2 sites, 16 periods, about 100 patients per
cluster-period. Prints wall seconds (compile and sampling separately), min bulk ESS over the
reported parameters, and ESS per second of sampling, for:

1. no covariates (112 cells);
2. age and comorbidity as categorical bins (3 x 3 patterns -> up to 1,008 cells);
3. the same model at 10k, 100k and 1M patients, aggregated to cells (cost should stay flat);
4. a continuous patient covariate, where every patient is its own cell (cost grows with cells);
5. the default trial's real excess_los cells (``results/headsup_synthetic``), when present.

``--compile`` instead measures compilation the way the pipeline meets it, one fresh process per
fit: a cold cache (new empty ``QIALIGN_CACHE_DIR``), warm with the same cells (a rerun), and warm
with other cells of the same model structure (another outcome / trial). Each line gives the
seconds for imports, building the model and ``nutpie.compile_pymc_model``.

Usage: python benchmarks/fit_speed.py [--chains 4 --draws 1000 --tune 1000] [--quick] [--compile]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

T_START = time.perf_counter()

from qialign.inference.compile_cache import configure_compile  # noqa: E402

configure_compile()  # before PyTensor is imported: the compile cache is QIALIGN_CACHE_DIR's

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from scipy.special import expit  # noqa: E402

from qialign.inference.fit import fit_model  # noqa: E402
from qialign.models.spec import simulated_spec  # noqa: E402

DEFAULT_TRIAL = Path("results/headsup_synthetic")

N_CLUSTERS, N_PERIODS = 7, 16


def simulate_cells(n_patients: int, covariates: str, seed: int = 1):
    """Binomial stepped-wedge cells drawn directly (no patient rows), plus alignment."""
    rng = np.random.default_rng(seed)
    clusters = [f"w{j}" for j in range(N_CLUSTERS)]
    site = np.array(["h1", "h2"])[np.arange(N_CLUSTERS) % 2]
    starts = 3 + 2 * rng.permutation(N_CLUSTERS)  # periods 3..15
    align = pd.Series(rng.normal(3.5, 0.6, N_CLUSTERS), index=clusters)
    A = ((align - align.mean()) / align.std(ddof=1)).to_numpy()
    v = rng.normal(0, 0.3, N_CLUSTERS)
    trend = 0.02 * np.arange(N_PERIODS)
    n_cp = max(1, n_patients // (N_CLUSTERS * N_PERIODS))
    out = []
    for j, c in enumerate(clusters):
        for t in range(1, N_PERIODS + 1):
            X = int(t >= starts[j])
            base = -0.6 + trend[t - 1] + v[j] + rng.normal(0, 0.1) + X * (-0.3 + 0.2 * A[j])
            key = dict(
                cluster=c, site=site[j], period=t, treated=X, exposure_time=t - starts[j] + 1 if X else 0
            )
            if covariates == "none":
                out.append({**key, "n": n_cp, "events": rng.binomial(n_cp, expit(base))})
            elif covariates == "bins":
                counts = rng.multinomial(n_cp, np.full(9, 1 / 9)).reshape(3, 3)
                for a in range(3):
                    for m in range(3):
                        if counts[a, m]:
                            p = expit(base + 0.2 * a + 0.3 * m)
                            out.append(
                                {
                                    **key,
                                    "age": f"a{a}",
                                    "comorbidity": f"c{m}",
                                    "n": counts[a, m],
                                    "events": rng.binomial(counts[a, m], p),
                                }
                            )
            else:  # continuous age: one cell per patient
                age = rng.normal(70, 12, n_cp)
                y = rng.binomial(1, expit(base + 0.02 * (age - 70)))
                out.append(pd.DataFrame({**key, "age": age, "n": 1, "events": y}))
    cells = pd.concat(out) if covariates == "continuous" else pd.DataFrame(out)
    return cells.reset_index(drop=True), align


def trial_cells(outcome: str = "excess_los"):
    """The default trial's prepared cells and wave-1 alignment (as the fit step reads them)."""
    d = DEFAULT_TRIAL / outcome
    cells = pd.read_parquet(d / "cells.parquet")
    covs = json.loads((d / "prepared.json").read_text())["covariates"]
    sc = pd.read_csv(DEFAULT_TRIAL / "alignment" / "scores.csv")
    sc = sc[(sc["wave"] == 1) & (sc.get("method", "descriptive") == "descriptive")]
    clusters = sorted(cells["cluster"].astype(str).unique())
    align = sc.set_index(sc["cluster"].astype(str))["alignment"].astype(float).reindex(clusters)
    return cells, align, covs


def compile_probe(source: str, freeze: bool = True) -> dict:
    """Build and compile one model in this (fresh) process; seconds per phase."""
    import nutpie

    from qialign.models.build import build_model
    from qialign.models.design import build_design

    t_import = time.perf_counter() - T_START
    if source == "synthetic":
        cells, align = simulate_cells(7 * 16 * 100, "bins", seed=1)
        covs = ["age", "comorbidity"]
    else:
        cells, align, covs = trial_cells(source)
    spec = simulated_spec("binomial", {"id": "bench"}, covariates=covs, outcome=source)
    t0 = time.perf_counter()
    model = build_model(build_design(cells, spec, align), spec)
    t1 = time.perf_counter()
    nutpie.compile_pymc_model(model, freeze_model=freeze)  # fit.compile_nutpie freezes
    t2 = time.perf_counter()
    return {"cells": len(cells), "import_s": t_import, "build_s": t1 - t0, "compile_s": t2 - t1}


def compile_table(freeze: bool = True):
    """Cold / warm compile, each in a fresh process as in the pipeline."""
    if not (DEFAULT_TRIAL / "excess_los" / "cells.parquet").exists():
        sys.exit(f"--compile needs {DEFAULT_TRIAL}/excess_los (run the default trial first)")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTENSOR_FLAGS", "NUMBA_CACHE_DIR")}
    rows = []
    with tempfile.TemporaryDirectory() as cache:
        env["QIALIGN_CACHE_DIR"] = cache
        for label, source in [
            ("cold cache", "excess_los"),
            ("warm, same cells", "excess_los"),
            ("warm, same cells again", "excess_los"),
            ("warm, other cells (readmit_30d)", "readmit_30d"),
            ("warm, other cells (synthetic)", "synthetic"),
        ]:
            t0 = time.perf_counter()
            out = subprocess.run(
                [sys.executable, __file__, "--probe", source] + ([] if freeze else ["--no-freeze"]),
                env=env,
                capture_output=True,
                text=True,
            )
            wall = time.perf_counter() - t0
            if out.returncode:
                sys.exit(out.stderr)
            row = {"case": label, **json.loads(out.stdout.strip().splitlines()[-1]), "process_wall_s": wall}
            row = {k: round(v, 1) if isinstance(v, float) else v for k, v in row.items()}
            print(row, flush=True)
            rows.append(row)
    print(f"\nfreeze_model={freeze}; Python writes bytecode caches: {not sys.flags.dont_write_bytecode}")
    print(pd.DataFrame(rows).to_string(index=False))


def run(label, n_patients, covariates, sampler, seed=1):
    if covariates == "excess_los":
        cells, align, covs = trial_cells("excess_los")
    else:
        cells, align = simulate_cells(n_patients, covariates, seed)
        covs = {"none": [], "bins": ["age", "comorbidity"], "continuous": ["age"]}[covariates]
    spec = simulated_spec("binomial", {"id": "bench"}, covariates=covs, sampler=sampler, outcome="excess_los")
    t0 = time.perf_counter()
    fit = fit_model(cells, spec, alignment=align, diagnostics={"retry": False}, seed=seed)
    wall = time.perf_counter() - t0
    ess = fit.diagnostics["ess_bulk_min"]
    row = {
        "case": label,
        "patients": int(cells["n"].sum()),
        "cells": len(cells),
        "compile_s": round(fit.timings["compile_s"], 1),
        "sample_s": round(fit.timings["sample_s"], 1),
        "wall_s": round(wall, 1),
        "min_ess_bulk": round(ess),
        "ess_per_s": round(ess / fit.timings["sample_s"], 1),
        "worst_ess": fit.diagnostics["summary"]["ess_bulk"].idxmin(),
        "divergences": fit.diagnostics["divergences"],
        "r_hat_max": round(fit.diagnostics["r_hat_max"], 3),
    }
    print(pd.DataFrame([row]).to_string(index=False, header=False), flush=True)
    return row


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chains", type=int, default=4)
    ap.add_argument("--draws", type=int, default=1000)
    ap.add_argument("--tune", type=int, default=1000)
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="skip the 1M and the largest continuous case")
    ap.add_argument("--compile", action="store_true", help="cold/warm compile in fresh processes only")
    ap.add_argument("--only", choices=["excess_los", "synthetic"], help="only these cases")
    ap.add_argument("--no-freeze", action="store_true", help="--compile with pm.Data kept shared (old)")
    ap.add_argument("--probe", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.probe:
        print(json.dumps(compile_probe(a.probe, not a.no_freeze)))
        return 0
    if a.compile:
        compile_table(not a.no_freeze)
        return 0
    sampler = {"chains": a.chains, "draws": a.draws, "tune": a.tune, "cores": a.cores}
    print(
        f"sampler: {sampler}; columns: case patients cells compile_s sample_s wall_s "
        "min_ess_bulk ess_per_s worst_ess divergences r_hat_max",
        flush=True,
    )
    rows = []
    if a.only != "synthetic" and (DEFAULT_TRIAL / "excess_los" / "cells.parquet").exists():
        rows.append(run("default trial excess_los", 0, "excess_los", sampler, seed=2))
    if a.only != "excess_los":
        rows.append(run("default, no covariates", 7 * 16 * 100, "none", sampler))
        rows.append(run("default, age+comorbidity bins", 7 * 16 * 100, "bins", sampler))
        for n in (10_000, 100_000) + (() if a.quick else (1_000_000,)):
            rows.append(run(f"bins, {n:,} patients", n, "bins", sampler))
        for n in (1_000, 4_000) + (() if a.quick else (12_000,)):
            rows.append(run(f"continuous age, {n:,} patients", n, "continuous", sampler))
    print()
    print(pd.DataFrame(rows).to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
