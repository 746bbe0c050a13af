"""Shared fixtures (the rule that a slow test says what it proves is tests/test_suite_rules.py).

- ``venv_env`` / ``snakemake``: run the workflow (or the CLI) in a project copy with this
  environment's executables, as the README's commands do;
- ``sicily``: the shipped Sicily series through the real steps and its rendered report;

Helper modules beside this file hold functions, not fixtures: ``sim_pipeline`` (a simulated trial
through the real steps), ``models_sim`` (the model tests' trials, made by the project's simulator),
``tiny_project`` (a workflow copy), ``estimand_fits`` and ``producer_columns`` (hand-written fit files
checked against the fit step).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


@pytest.fixture(scope="session")
def venv_env() -> dict[str, str]:
    """This environment with its executables first on PATH and the project's caches (compiled
    models, step timings) shared by every project copy."""
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")
    env.setdefault("QIALIGN_CACHE_DIR", str(ROOT / ".cache"))
    return env


@pytest.fixture(scope="session")
def snakemake(venv_env) -> Callable[..., subprocess.CompletedProcess]:
    """``snakemake(workdir, *args)``: run Snakemake (``--cores 2`` unless cores are given) there."""

    def run(workdir: Path, *args: str, **kw) -> subprocess.CompletedProcess:
        cores = [] if any(a.startswith("--cores") for a in args) else ["--cores", "2"]
        cmd = [str(BIN / "snakemake"), *cores, *args]
        return subprocess.run(cmd, cwd=workdir, env=venv_env, capture_output=True, text=True, **kw)

    return run


@pytest.fixture(scope="module")
def sicily(tmp_path_factory) -> dict:
    """The shipped Sicily series (its ``its`` model, 2 x 200 draws) through validate, alignment,
    prepare, fit and cross-check, and its report (with the design grid and series figures seen)."""
    from qialign.report import figures, render_report
    from qialign.steps.alignment import alignment_scores
    from qialign.steps.crosscheck import crosscheck_step
    from qialign.steps.fit import fit_step
    from qialign.steps.prepare import prepare_outcome, validate_trial
    from sim_pipeline import shipped_sicily

    work = tmp_path_factory.mktemp("sicily")
    config, cfg = shipped_sicily(
        work / "sicily_its.yaml",
        sampler={"chains": 2, "draws": 200, "tune": 300},
        diagnostics={"retry": False},
    )
    res = work / "results" / "sicily_its"
    scores = res / "alignment" / "scores.csv"
    validate_trial(config, res / "validation.txt", res / "data.json")
    alignment_scores(config, scores)
    prepare_outcome(config, "aces", res / "aces")
    fit_step(config, "aces", "its", res / "aces", scores, res / "aces" / "its")
    crosscheck_step(config, "aces", res / "aces", scores, res / "aces" / "crosscheck.csv")
    drawn, series = [], []
    real, real_series = figures.design_grid, figures.time_series
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(figures, "design_grid", lambda *a: drawn.append(a) or real(*a))
        mp.setattr(figures, "time_series", lambda *a, **k: series.append(a[0]) or real_series(*a, **k))
        render_report(res, config, work / "report.html")
    html = (work / "report.html").read_text(encoding="utf-8")
    return {"html": html, "results": res, "cfg": cfg, "grid": drawn, "series": series}
