"""Fit speed against peers on the issue's reference trial: a 12-ward x 10-period stepped wedge.

The project's simulator (``qialign.studies.simulate``) draws ~7,200 patients (60 a ward-month on
average) with a continuous age covariate (one cell per patient), ward and ward-month effects and a
treatment x alignment interaction (alignment given per ward). The trial is prepared in this process;
then the real fit step runs in a **fresh process** (``qialign.steps.fit.fit_step``, what ``qialign
fit`` runs), which prints its wall time split into

- imports: importing the fit step (PyMC, numba, ...) and nutpie, which the step imports on first use,
- compile: building the nutpie model (``timings.compile_s`` of ``fit.json``),
- sampling: ``timings.sample_s`` (all attempts),
- other: reading, building the model, estimands, checks and writing the results,

with the min bulk ESS and bulk ESS per second of sampling. When ``Rscript`` with brms is installed
the same model is fitted with brms (``brm``, 4 chains, the user's default settings) on the same
patient rows and the ratio is printed; otherwise that is skipped and said so.

Usage::

    python benchmarks/peer_speed.py [--work DIR] [--fits 2] [--no-brms] [--re-export]
    python benchmarks/peer_speed.py --work DIR --fit-only        # one fit process on DIR's trial

``--fits 2`` runs two fit processes in turn (the second meets the compile cache the first left);
``--fit-only`` reuses a trial prepared before, so a timing tool can repeat exactly the fit process;
``--re-export`` then simulates the trial again with other patients in the same wards and periods
(another cell count, as a re-exported patient table has) and fits it in a new process: its compile
is the cache's load, not a compilation.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml

OUTCOME, MODEL = "y", "main"
SIMULATION = {
    "design": "stepped_wedge",
    "periods": 10,
    "clusters_per_site": [6, 6],
    "schedule": {"baseline": 1, "every": 1, "per_step": 2},
    "write_alignment": True,
    "patients": {"per_period": 60, "sd_log_cluster_size": 0.2},
    "survey": {"enabled": False},
    "fidelity": {"enabled": False},
    "outcomes": {
        OUTCOME: {
            "family": "bernoulli",
            "baseline": 0.25,
            "treatment_effect": -0.3,
            "alignment_interaction": -0.2,
            "sd_site": 0.0,
            "sd_cluster": 0.3,
            "sd_cluster_period": 0.15,
            "sd_treatment": 0.0,
            "betas": {"age": 0.02, "comorbidity": 0.0},
        }
    },
}
TRIAL = {
    "id": "peer_speed",
    "design": "stepped_wedge",
    "outcomes": {OUTCOME: {"family": "bernoulli"}},
    "covariates": ["age"],
    "alignment": {"source": "given"},
    "models": [{"id": MODEL, "site_effect": False, "cluster_period": "exchangeable"}],
}
#: the fit process: import the step, fit, print the split as one JSON line
FIT_PROCESS = """
import json, sys, time
t0 = time.perf_counter()
from qialign.inference.compile_cache import configure_compile
configure_compile()
from qialign.steps.fit import fit_step
import nutpie.compile_pymc  # the fit imports it on first use (~0.6 s, arviz and matplotlib): an import
t1 = time.perf_counter()
w = __import__("pathlib").Path(sys.argv[1])
rec = fit_step(w / "trial.yaml", "y", "main", w / "prepared", w / "scores.csv", w / "fit")
t2 = time.perf_counter()
print("PEER_SPEED " + json.dumps({"imports_s": t1 - t0, "fit_step_s": t2 - t1, "timings": rec.timings,
      "ess_bulk_min": rec.ess_bulk_min, "ess_tail_min": rec.ess_tail_min, "sampler": rec.sampler,
      "kept": rec.attempts[-1]["draws"], "reliable": rec.reliable, "divergences": rec.divergences}))
"""
BRMS = """
suppressMessages(library(brms))
d <- read.csv(file.path(commandArgs(TRUE)[1], "brms_rows.csv"))
d$period <- factor(d$period)
d$cp <- interaction(d$cluster, d$period)
t0 <- Sys.time()
fit <- brm(y ~ period + treated + treated:alignment + alignment + age_z + (1 | cluster) + (1 | cp),
           data = d, family = bernoulli(), chains = 4, cores = 2, seed = 1, refresh = 0)
wall <- as.numeric(difftime(Sys.time(), t0, units = "secs"))
ess <- min(posterior::summarise_draws(as_draws_df(fit), "ess_bulk")$ess_bulk, na.rm = TRUE)
cat(sprintf("BRMS %f %f\\n", wall, ess))
"""


def setup(work: Path, seed: int = 2026) -> None:
    """Simulate the trial into ``work/data``, write ``trial.yaml``, prepare and score it."""
    from qialign.steps.alignment import alignment_scores
    from qialign.steps.prepare import prepare_outcome
    from qialign.studies.simulate import simulate_trial

    sim = simulate_trial(SIMULATION, seed)
    sim.write(work / "data")
    cfg = {
        **TRIAL,
        "seed": seed,
        "data": {t: str(work / "data" / f"{t}.csv") for t in ("clusters", "patients")},
    }
    (work / "trial.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    prepare_outcome(work / "trial.yaml", OUTCOME, work / "prepared")
    alignment_scores(work / "trial.yaml", work / "scores.csv")
    rows = sim.patients.merge(sim.clusters[["cluster", "start_period", "alignment"]], on="cluster")
    rows["treated"] = (rows["period"] >= rows["start_period"]).astype(int)
    rows["age_z"] = (rows["age"] - rows["age"].mean()) / rows["age"].std()
    rows[["cluster", "period", "treated", "alignment", "age_z", OUTCOME]].to_csv(
        work / "brms_rows.csv", index=False
    )
    print(f"simulated {len(sim.patients)} patients, 12 wards x 10 periods, into {work}")


def fit_process(work: Path) -> dict:
    """One fit in a fresh process; its split, with the whole process's wall time."""
    shutil.rmtree(work / "fit", ignore_errors=True)
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", FIT_PROCESS, str(work)], capture_output=True, text=True, check=False
    )
    wall = time.perf_counter() - t0
    line = [x for x in proc.stdout.splitlines() if x.startswith("PEER_SPEED ")]
    if proc.returncode or not line:
        raise SystemExit(f"fit process failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    out = json.loads(line[0].removeprefix("PEER_SPEED "))
    t = out["timings"]
    out["wall_s"] = wall
    out["other_s"] = out["fit_step_s"] - t["compile_s"] - t["sample_s"]
    out["startup_s"] = wall - out["imports_s"] - out["fit_step_s"]  # interpreter start-up
    return out


def report(label: str, r: dict) -> None:
    t, s = r["timings"], r["sampler"]
    print(
        f"{label}: wall {r['wall_s']:.1f} s = start-up {r['startup_s']:.1f} + imports {r['imports_s']:.1f}"
        f" + compile {t['compile_s']:.1f} + sampling {t['sample_s']:.1f} + other (read, build, estimands,"
        f" checks, writing) {r['other_s']:.1f}; {s['chains']} chains x ({s['tune']} tune + {r['kept']}"
        f" of at most {s['draws']} draws); min bulk ESS {r['ess_bulk_min']:.0f},"
        f" tail {r['ess_tail_min']:.0f};"
        f" ESS/s {r['ess_bulk_min'] / t['sample_s']:.1f} (sampling), {r['ess_bulk_min'] / r['wall_s']:.1f}"
        f" (wall); divergences {r['divergences']}; reliable {r['reliable']}"
    )


def brms(work: Path) -> tuple[float, float] | None:
    """(wall seconds, min bulk ESS) of brms on the same rows, or None when R or brms is missing."""
    if shutil.which("Rscript") is None:
        return None
    if subprocess.run(["Rscript", "-e", "library(brms)"], capture_output=True).returncode:
        return None
    script = work / "brms.R"
    script.write_text(BRMS)
    proc = subprocess.run(["Rscript", str(script), str(work)], capture_output=True, text=True)
    line = [x for x in proc.stdout.splitlines() if x.startswith("BRMS ")]
    if not line:
        raise SystemExit(f"brms failed:\n{proc.stderr[-3000:]}")
    wall, ess = map(float, line[0].split()[1:])
    return wall, ess


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, help="folder for the trial (default: a temporary one)")
    ap.add_argument("--fits", type=int, default=2, help="fit processes in turn")
    ap.add_argument("--fit-only", action="store_true", help="fit the trial prepared in --work before")
    ap.add_argument("--no-brms", action="store_true")
    ap.add_argument(
        "--re-export",
        action="store_true",
        help="then fit the trial re-simulated with other patients in the same wards and periods",
    )
    args = ap.parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="peer_speed_"))
    work.mkdir(parents=True, exist_ok=True)
    if not args.fit_only:
        setup(work)
    results = []
    for k in range(1 if args.fit_only else args.fits):
        results.append(fit_process(work))
        report(f"qialign fit {k + 1}", results[-1])
    if args.re_export:  # other cells, same structure: the compiled model is reused
        setup(work / "re_export", seed=2027)
        cells = len(pd.read_parquet(work / "re_export" / "prepared" / "cells.parquet"))
        report(f"re-export ({cells} cells)", fit_process(work / "re_export"))
    if args.fit_only or args.no_brms:
        return 0
    peer = brms(work)
    if peer is None:
        print("brms: skipped (Rscript with brms is not installed; Debian: r-base-core r-cran-brms)")
        return 0
    best = min(results, key=lambda r: r["wall_s"])
    print(
        f"brms: wall {peer[0]:.1f} s, min bulk ESS {peer[1]:.0f};"
        f" brms / qialign wall {peer[0] / best['wall_s']:.1f}x"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
