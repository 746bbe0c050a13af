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


def test_debiased_alignment_and_reliability_exact():
    """By hand on the two-ward survey: pooled within-ward variances, the gap's sampling variance,
    sqrt(max(g^2 - v, 0)), and R = 1 - mean SE^2 / var(alignment)."""
    out = descriptive_scores(_survey(), CFG, ["A", "B"], seed=1, n_boot=200).set_index("cluster")
    # ward A: clinical safety 100 and 50 (mean 75), managers the same; flow 75 and 25 for both roles.
    # ward B: every role answers identically, so it adds no within-ward variance.
    s2_safety = ((100 - 75) ** 2 + (50 - 75) ** 2) / ((2 - 1) + (2 - 1))  # pooled over A and B: 625
    s2_flow = ((75 - 50) ** 2 + (25 - 50) ** 2) / 2  # 625
    v = {"safety": s2_safety / 2 + s2_safety / 2, "flow": s2_flow / 2 + s2_flow / 2}  # 625 each
    gaps_b = {"safety": 100.0, "flow": 100.0}
    expected_b = 1 - np.mean([np.sqrt(gaps_b[d] ** 2 - v[d]) for d in ("safety", "flow")]) / 100
    assert out.loc["B", "alignment_debiased"] == pytest.approx(expected_b, abs=1e-12)
    assert out.loc["A", "alignment_debiased"] == pytest.approx(1.0)  # no gap stays no gap
    sd = out["alignment_sd"]
    expected_r = max(0.0, 1 - (sd**2).mean() / out["alignment"].var(ddof=1))
    assert out["reliability"].tolist() == pytest.approx([expected_r] * 2, abs=1e-12)


def test_debiasing_removes_most_of_the_penalty_on_small_manager_samples():
    """No true gap anywhere: with one manager a ward's plain misalignment is pure noise and large;
    de-biased, the one-manager wards come much closer to the ten-manager wards."""
    rng = np.random.default_rng(5)
    rows, rid = [], 0
    for j in range(40):
        n_man = 1 if j % 2 else 10
        for role, n in (("doctor", 10), ("matron", n_man)):
            for _ in range(n):
                answers = np.clip(np.round(rng.normal(3, 1, 3)), 1, 5)
                rows.append({"respondent": rid, "cluster": f"W{j}", "role": role,
                             "q1": answers[0], "q2": 6 - answers[1], "q3": answers[2]})  # fmt: skip
                rid += 1
    out = descriptive_scores(pd.DataFrame(rows), CFG, [f"W{j}" for j in range(40)], seed=1, n_boot=20)
    one = out["cluster"].str[1:].astype(int) % 2 == 1

    def penalty(col):  # mean misalignment of one-manager wards minus that of ten-manager wards
        return (1 - out.loc[one, col]).mean() - (1 - out.loc[~one, col]).mean()

    plain, debiased = penalty("alignment"), penalty("alignment_debiased")  # 0.091, 0.033 here
    assert plain > 0.05 and 0 <= debiased < plain / 2, (plain, debiased)


def test_the_debiased_score_moderates_when_configured(tmp_path):
    """``alignment.score: debiased`` makes the moderator read alignment_debiased (one table of
    which column each setting reads: qialign.alignment.debias.MODERATOR_COLUMN); plain is the default."""
    from qialign.steps.alignment import moderator_alignment

    out = descriptive_scores(_survey(), CFG, ["A", "B"], seed=1, n_boot=50)
    path = tmp_path / "scores.csv"
    out.to_csv(path, index=False)
    plain, *_ = moderator_alignment(path, None, ["A", "B"])
    debiased, *_ = moderator_alignment(path, None, ["A", "B"], "alignment_debiased")
    assert plain.tolist() == pytest.approx(out["alignment"].tolist())
    assert debiased.tolist() == pytest.approx(out["alignment_debiased"].tolist())
    assert debiased["B"] > plain["B"]  # the noise part of ward B's gap is taken out
