"""Descriptive alignment: exact values on a hand-computed survey."""

import numpy as np
import pandas as pd
import pytest

from qialign.alignment import descriptive_scores, score_items, standardise_over_clusters

CFG = {
    "roles": {"clinical": ["doctor", "nurse"], "managerial": ["matron"]},
    "scale": {"min": 1, "max": 5},
    "domains": {"safety": ["q1", "q2"], "flow": ["q3"]},
    "reverse": ["q2"],
}


def _survey():
    # cluster A: clinical answer (q1, q2 reversed, q3); managers identical -> alignment 1
    # cluster B: clinical all 5, managers all 1 (q2 reversed: raw 1 -> 5 and raw 5 -> 1)
    return pd.DataFrame(
        {
            "respondent": [1, 2, 3, 4, 5, 6, 7, 8],
            "cluster": ["A", "A", "A", "A", "B", "B", "B", "B"],
            "role": ["doctor", "nurse", "matron", "matron", "doctor", "nurse", "matron", "matron"],
            "q1": [5, 3, 5, 3, 5, 5, 1, 1],
            "q2": [1, 3, 1, 3, 1, 1, 5, 5],
            "q3": [4, 2, 4, 2, 5, 5, 1, 1],
        }
    )


def test_scores_reverse_and_rescale():
    long = score_items(_survey(), CFG)
    first = long[(long["respondent"] == 1)].set_index("domain")["score"]
    # q1 = 5, q2 reversed 1 -> 5: mean 5 -> 100; q3 = 4 -> 75
    assert first["safety"] == pytest.approx(100.0)
    assert first["flow"] == pytest.approx(75.0)
    assert set(long["role"]) == {"clinical", "managerial"}


def test_alignment_exact_values():
    out = descriptive_scores(_survey(), CFG, ["A", "B"], seed=1, n_boot=200).set_index("cluster")
    assert out.loc["A", "alignment"] == pytest.approx(1.0)
    assert out.loc["B", "alignment"] == pytest.approx(0.0)
    assert out.loc["B", "gap_safety"] == pytest.approx(100.0)
    assert out.loc["A", "clinical_flow"] == pytest.approx(50.0)  # (75 + 25) / 2
    assert (out.loc["A", "n_clinical"], out.loc["A", "n_managerial"]) == (2, 2)
    assert out.loc["B", "rwg_clinical"] == pytest.approx(1.0)  # identical answers
    assert out.loc["B", "lower"] <= out.loc["B", "alignment"] <= out.loc["B", "upper"]
    assert (out["method"] == "descriptive").all()


def test_missing_managers_warns_and_gives_nan():
    survey = _survey()
    survey = survey[~((survey["cluster"] == "B") & (survey["role"] == "matron"))]
    with pytest.warns(UserWarning, match="cluster B wave 1: no managerial respondents"):
        out = descriptive_scores(survey, CFG, ["A", "B"], seed=1, n_boot=50).set_index("cluster")
    assert np.isnan(out.loc["B", "alignment"])
    assert out.loc["A", "alignment"] == pytest.approx(1.0)


def test_standardise_over_clusters():
    z = standardise_over_clusters(pd.Series([1.0, 2.0, 3.0, 6.0]))
    assert z.mean() == pytest.approx(0.0, abs=1e-12)
    assert z.std(ddof=1) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="does not vary"):
        standardise_over_clusters(pd.Series([2.0, 2.0]))
