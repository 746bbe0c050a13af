"""Binned covariates: exact categories, missing kept missing, fewer cells, config checks."""

import numpy as np
import pandas as pd
import pytest

from qialign.config import validate_trial_config
from qialign.data import aggregate, analysis_rows, load_trial
from qialign.data.prepare import bin_covariate
from qialign.errors import QialignError


def test_bin_covariate_labels_are_exact():
    out = bin_covariate(pd.Series([50, 65, 79.9, 80, np.nan, 100.0]), [65, 80])
    assert out.tolist() == ["<65", "65-<80", "65-<80", ">=80", None, ">=80"]


def test_default_trial_bins_shrink_cells():
    from qialign.config import load_trial_config

    cfg = load_trial_config("config/trials/headsup_synthetic.yaml")
    trial = load_trial(cfg)
    rows = analysis_rows(trial, "excess_los")
    assert set(rows["age"]) == {"<65", "65-<80", ">=80"}
    cells = aggregate(rows, "bernoulli", ["age", "comorbidity"])
    assert len(cells) <= 112 * 9
    assert cells["n"].sum() == len(rows) == 10943
    assert cells["events"].sum() == rows["y"].sum()


@pytest.mark.parametrize(
    ("bins", "message"),
    [
        ({"weight": [1]}, "covariate_bins/weight: not one of the covariates"),
        ({"age": [80, 65]}, "strictly increasing"),
    ],
)
def test_bins_config_checked(bins, message):
    raw = {
        "id": "t",
        "design": "stepped_wedge",
        "data": {"clusters": "c", "patients": "p"},
        "outcomes": {"y": {"family": "bernoulli"}},
        "seed": 1,
        "covariates": ["age"],
        "covariate_bins": bins,
    }
    with pytest.raises(QialignError, match=message):
        validate_trial_config(raw)
