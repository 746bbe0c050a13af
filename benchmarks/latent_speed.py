"""Compile and sampling time of the latent alignment model (issue 15, item 4).

A 12-ward staff survey (``qialign.studies.simulate_survey.staff_survey``: ~14 clinical staff and
3-5 managers per ward, about 200 respondents, 4 domains x 3 items, ~3% missing) fitted with the
default latent sampler settings (2 chains, 500 tune + 500 draws, 2 cores). Each run is a fresh
process; compilation is measured cold (a new empty compile cache, ``QIALIGN_CACHE_DIR``: a first
``qialign alignment``), as a rerun of the same survey (the compiled model loads from the cache:
``qialign.inference.structure_cache``), warm (the same cache, another survey of the same design
whose respondent count rounds to the same number of model slots,
``qialign.alignment.latent_model.respondent_slots``: the compiled model loads too) and new size (the
same cache, a survey of the same design in another size class: its kernels load from the cache,
the model is compiled).
CPU seconds of the whole process are printed too (the wall times depend on what else the machine
runs). Target: <= 15 s compile, <= 30 s sampling.

Usage: python benchmarks/latent_speed.py [--runs 1] [--seed 1]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

CHILD = """
import json, sys, time
t0 = time.perf_counter()
from qialign.inference.compile_cache import configure_compile
configure_compile()
from qialign.alignment.latent import latent_scores
from qialign.studies.simulate_survey import staff_survey
from scipy.stats import spearmanr
survey, cfg, truth = staff_survey(int(sys.argv[1]))
t1 = time.perf_counter()
fit = latent_scores(survey, cfg, list(truth.index), seed=1)
s = fit.scores.set_index("cluster").reindex(truth.index)
print(json.dumps({
    "import_s": t1 - t0, "cpu_s": time.process_time(), **fit.timings, "respondents": len(survey),
    "answers": int(survey[[q for qs in cfg["domains"].values() for q in qs]].notna().sum().sum()),
    "r_hat_max": fit.diagnostics.get("r_hat_max"), "divergences": fit.diagnostics["divergences"],
    "spearman": float(spearmanr(s["alignment"], truth).statistic),
}))
"""


def run_once(seed: int, cache: str) -> dict:
    """One fit in a fresh process with compile cache ``cache``."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTENSOR_FLAGS", "NUMBA_CACHE_DIR")}
    env["QIALIGN_CACHE_DIR"] = cache
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(seed)], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    for k in range(args.runs):
        with tempfile.TemporaryDirectory() as cache:
            first = args.seed + k
            runs = (
                (first, "cold"),
                (first, "rerun: same survey"),
                (first + 100, "warm: same size class"),
                (other_size_class(first), "warm: new size class"),
            )
            for seed, state in runs:
                report(seed, state, run_once(seed, cache))


def other_size_class(seed: int) -> int:
    """The first survey seed after ``seed`` + 200 whose respondents round to other model slots."""
    from qialign.alignment.latent_model import respondent_slots, survey_long
    from qialign.studies.simulate_survey import staff_survey

    def slots(s: int) -> int:
        survey, cfg, truth = staff_survey(s)
        return respondent_slots(len(survey_long(survey, cfg, list(truth.index)).respondents))

    return next(s for s in range(seed + 200, seed + 400) if slots(s) != slots(seed))


def report(seed: int, state: str, r: dict) -> None:
    print(
        f"survey seed {seed}: {r['respondents']} respondents, {r['answers']} answers; "
        f"compile {r['compile_s']:.1f} s ({state} cache), sampling {r['sample_s']:.1f} s; "
        f"r_hat max {r['r_hat_max']:.3f}, divergences {r['divergences']}, "
        f"Spearman vs truth {r['spearman']:.3f}; CPU {r['cpu_s']:.0f} s",
        flush=True,
    )


if __name__ == "__main__":
    main()
