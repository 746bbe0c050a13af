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
    """headsup_synthetic (5 outcomes x 1 model), sicily_its (1 outcome x 2 models), discharge_synthetic
    and sepsis_synthetic (1 outcome x 1 model each) and their synthesis, plus the robustness battery
    of the two primary trials' primary outcomes (8 variants of headsup's, 3 of sicily's; the two
    synthesis trials switch it off)."""
    run = _run(str(BIN / "snakemake"), "-n", "--forceall", "--quiet", "rules")
    assert run.returncode == 0, run.stderr[-3000:]
    text = run.stdout + run.stderr
    for rule, count in {
        "validate": 4,
        "alignment": 4,
        "prepare": 8,
        "fit": 9 + 8 + 3,
        "robustness": 2,
        "crosscheck": 8,
        "compare": 8,
        "collect": 4,
        "power": 4,
        "report": 4,
        "synthesis": 1,
        "synthesis_report": 1,
    }.items():
        assert any(line.split() == [rule, str(count)] for line in text.splitlines()), (rule, text)
