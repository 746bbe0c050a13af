"""The robustness folder contract, ``results/<trial>/<outcome>/robustness/``: file names and
columns, written by ``steps/robustness.py`` and read by the report (pure python)."""

from __future__ import annotations

#: folder of an outcome's robustness results, under results/<trial>/<outcome>/
ROBUSTNESS_DIR = "robustness"

#: the files of that folder (the robustness rule's named outputs)
ROBUSTNESS_FILES = {
    "variants": "variants.csv",
    "inference": "inference.csv",
    "sensitivity": "prior_sensitivity.csv",
    "verdict": "verdict.json",
}

#: ``variants.csv``: the primary (aspect ``primary``) and every variant, per estimand
VARIANT_COLUMNS = (
    "outcome",
    "model",  # model id (the variant's own, as in estimates.csv)
    "aspect",  # primary | trend | exposure | cluster_period | random_treatment | transition | covariates
    "label",  # what the variant changes, in words
    "estimand",
    "scale",
    "estimate",
    "lower",
    "upper",
    "interval",
    "reliable",  # the fit passed its diagnostics
    "disagrees",  # why it disagrees with the primary (qialign.robustness.verdict), '' if it does not
)

#: ``inference.csv``: the permutation test and the placebo checks, one row each
INFERENCE_COLUMNS = (
    "check",  # permutation | placebo_time | placebo_space
    "description",
    "estimator",
    "scale",
    "estimate",
    "p_value",
    "lower",
    "upper",
    "interval",  # ci95 from test inversion
    "assignments",  # re-assignments compared (the observed included)
    "exact",  # every distinct assignment (True) or a random sample of them
    "note",  # why a check did not run, or that it is a sensitivity check
)

#: ``prior_sensitivity.csv``: power-scaling sensitivity of the primary's parameters
SENSITIVITY_COLUMNS = (
    "parameter",
    "prior",
    "likelihood",
    "diagnosis",
    "pareto_k_prior",
    "pareto_k_likelihood",
    "reliable",
)
