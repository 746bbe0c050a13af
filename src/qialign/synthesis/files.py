"""The files one trial contributes to the synthesis (the synthesis rule's inputs), by path alone:
light to import for the workflow's DAG (``workflow/rules/common.smk``), unlike the readers in
:mod:`qialign.synthesis.inputs`."""

from __future__ import annotations

from pathlib import Path

from qialign.results import FIT_FILES


def trial_files(results: Path, trial: str, outcome: str, model: str) -> dict[str, Path]:
    """The fit's posterior, record and counterfactual of ``outcome`` / ``model``, and the trial's
    alignment scores, under ``results``."""
    fit = Path(results) / trial / outcome / model
    return {
        "posterior": fit / FIT_FILES["posterior"],
        "record": fit / FIT_FILES["record"],
        "counterfactual": fit / FIT_FILES["counterfactual"],
        "scores": Path(results) / trial / "alignment" / "scores.csv",
    }
