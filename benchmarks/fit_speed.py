"""Fit speed of the binomial outcome model (issue "Hierarchical outcome models").

Default-trial-like stepped wedge: 7 clusters in 2 sites, 16 periods, about 100 patients per
cluster-period. Prints wall seconds (compile and sampling separately), min bulk ESS over the
reported parameters, and ESS per second of sampling, for:

1. no covariates (112 cells);
2. age and comorbidity as categorical bins (3 x 3 patterns -> up to 1,008 cells);
3. the same model at 10k, 100k and 1M patients, aggregated to cells (cost should stay flat);
4. a continuous patient covariate, where every patient is its own cell (cost grows with cells).

Usage: python benchmarks/fit_speed.py [--chains 4 --draws 1000 --tune 1000] [--quick]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("PYTENSOR_FLAGS", "base_compiledir=" + os.path.abspath(".cache/pytensor"))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from scipy.special import expit  # noqa: E402

from qialign.models import ModelSpec, fit_model  # noqa: E402

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


def run(label, n_patients, covariates, sampler, seed=1):
    cells, align = simulate_cells(n_patients, covariates, seed)
    covs = {"none": [], "bins": ["age", "comorbidity"], "continuous": ["age"]}[covariates]
    spec = ModelSpec.from_config(
        {"id": "bench"}, "excess_los", {"family": "binomial"}, {"covariates": covs, "sampler": sampler}
    )
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
    a = ap.parse_args(argv)
    sampler = {"chains": a.chains, "draws": a.draws, "tune": a.tune, "cores": a.cores}
    print(
        f"sampler: {sampler}; columns: case patients cells compile_s sample_s wall_s "
        "min_ess_bulk ess_per_s divergences r_hat_max",
        flush=True,
    )
    rows = [run("default, no covariates", 7 * 16 * 100, "none", sampler)]
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
