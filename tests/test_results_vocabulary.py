"""estimates.csv's one vocabulary (qialign.results): the reference row and the row builders."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from qialign.frequentist import COLUMNS
from qialign.results import (
    CROSSCHECK_COLUMNS,
    ESTIMATE_COLUMNS,
    REFERENCE_CROSSCHECKS,
    bayesian_rows,
    frequentist_rows,
    interval_label,
)


def _freq(rows) -> pd.DataFrame:
    return pd.DataFrame(
        [[m, e, "log-odds", est, 0.1, -1.0, 1.0, 5.0, ""] for m, e, est in rows], columns=COLUMNS
    )


def test_reference_follows_the_order_and_skips_missing_estimates():
    freq = _freq(
        [
            ("glm_cluster_robust", "treatment_effect", 0.1),
            ("gee_exchangeable_md", "treatment_effect", 0.2),
            ("gee_nested_exchangeable_md", "treatment_effect", np.nan),  # failed: not the reference
            ("glm_cluster_robust", "alignment_interaction", 0.3),
            ("mixedlm", "alignment_interaction", 0.4),  # not in the order: after the listed ones
        ]
    )
    out = frequentist_rows(freq, "t", "y", "m1", 0.9)
    assert list(out.columns) == list(CROSSCHECK_COLUMNS)
    ref = out.loc[out["reference"], ["method", "estimand"]].values.tolist()
    assert ref == [
        ["gee_exchangeable_md", "treatment_effect"],
        ["glm_cluster_robust", "alignment_interaction"],
    ]
    assert set(out["interval"]) == {"ci90"}
    assert set(out["model"]) == set(out["comparable_to"]) == {"m1"}
    assert set(out["approach"]) == {"frequentist"}
    assert REFERENCE_CROSSCHECKS[0] == "gee_nested_exchangeable_md"


def test_unknown_method_is_refused():
    with pytest.raises(ValueError, match="not in qialign.methods"):
        frequentist_rows(_freq([("gee_magic", "treatment_effect", 0.1)]), "t", "y", "m1", 0.95)


def test_bayesian_rows_and_labels():
    est = pd.DataFrame(
        [["treatment_effect", "log-odds", 0.1, -0.2, 0.4, "eti95", 1.0, 800.0]],
        columns=["estimand", "scale", "estimate", "lower", "upper", "interval", "r_hat", "ess_bulk"],
    )
    out = bayesian_rows(est, "t", "y", "m1", "draws")
    assert list(out.columns) == list(ESTIMATE_COLUMNS)
    row = out.iloc[0]
    assert (row["approach"], row["method"], row["comparable_to"], row["reference"]) == (
        "bayesian",
        "bayes_draws",
        "",
        False,
    )
    assert interval_label(0.95, "eti") == "eti95"
    assert interval_label(0.9, "hdi") == "hdi90"
    assert interval_label(0.95, "ci") == "ci95"
    with pytest.raises(ValueError):
        interval_label(0.95, "credible")
