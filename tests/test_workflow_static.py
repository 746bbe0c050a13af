"""Static checks of the workflow: lint, formatting, and a dry run of the shipped default trial."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _run(*cmd: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_snakemake_lint_is_clean():
    run = _run(str(BIN / "snakemake"), "--lint")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "Congratulations" in run.stdout + run.stderr


def test_snakefmt_check_passes():
    run = _run(str(BIN / "snakefmt"), "--check", ".")
    assert run.returncode == 0, run.stdout + run.stderr


def test_dry_run_plans_every_step_of_the_shipped_trials():
    """headsup_synthetic (5 outcomes x 1 model) and sicily_its (1 outcome x 2 models), plus the
    robustness battery of each primary outcome (8 variants of headsup's, 3 of sicily's)."""
    run = _run(str(BIN / "snakemake"), "-n", "--forceall", "--quiet", "rules")
    assert run.returncode == 0, run.stderr[-3000:]
    text = run.stdout + run.stderr
    for rule, count in {
        "validate": 2,
        "alignment": 2,
        "prepare": 6,
        "fit": 7 + 8 + 3,
        "robustness": 2,
        "crosscheck": 6,
        "compare": 6,
        "collect": 2,
        "power": 2,
        "report": 2,
    }.items():
        assert any(line.split() == [rule, str(count)] for line in text.splitlines()), (rule, text)
