"""`.venv/bin/snakemake ...` works with nothing activated: the rules find `qialign` in the
environment that runs Snakemake, not on the user's PATH (README's commands, as written)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tiny_project import tiny_project

pytestmark = pytest.mark.workflow

BIN = Path(sys.executable).parent


def _tiny_trial(work: Path, **extra) -> None:
    """The tiny simulated trial, one binary outcome, as the only trial of a workflow copy."""
    data = tiny_project(work)
    (work / "config" / "trials").mkdir(parents=True)
    cfg = {
        "id": "tiny",
        "design": "stepped_wedge",
        "data": {"clusters": str(data / "clusters.csv"), "patients": str(data / "patients.csv")},
        "outcomes": {"y_bin": {"family": "bernoulli"}},
        "seed": 1,
        **extra,
    }
    (work / "config" / "trials" / "tiny.yaml").write_text(yaml.safe_dump(cfg))
    (work / "config" / "config.yaml").write_text("trials: [tiny]\n")


def test_rules_run_without_the_environment_on_path(tmp_path):
    _tiny_trial(tmp_path)
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"} | {"PATH": "/usr/bin:/bin"}
    run = subprocess.run(
        [str(BIN / "snakemake"), "--cores", "1", "results/tiny/y_bin/cells.parquet"],
        cwd=tmp_path, env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    assert (tmp_path / "results" / "tiny" / "y_bin" / "cells.parquet").is_file()


def test_a_failed_step_prints_its_cause_in_the_terminal(tmp_path):
    """The default profile shows a failed job's log: the user sees qialign's message, not only an
    exit status (here: alignment given but the clusters table has no alignment column)."""
    _tiny_trial(tmp_path, alignment={"source": "given"})
    run = subprocess.run(
        [str(BIN / "snakemake"), "--cores", "1", "results/tiny/alignment/scores.csv"],
        cwd=tmp_path, capture_output=True, text=True,
    )  # fmt: skip
    text = run.stdout + run.stderr
    assert run.returncode != 0
    assert "Logfile results/tiny/logs/" in text
    assert "qialign" in text and "alignment" in text.split("Logfile", 1)[1]
    assert "Traceback" not in text.split("Logfile", 1)[1].split("=====", 2)[1]
