"""Survey waves as labels: their order (qialign.waves), validation, scores, change and the moderator."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
import yaml

from qialign.alignment import alignment_change, descriptive_scores, survey_long
from qialign.config import validate_trial_config
from qialign.data import load_trial
from qialign.data.io import read_results_csv
from qialign.errors import QialignError
from qialign.steps.alignment import moderator_alignment
from qialign.waves import file_order, resolve_wave, wave_label, wave_order
from test_alignment_descriptive import CFG
from test_alignment_descriptive import _survey as hand_computed_survey
from test_data_helpers import RAW_CONFIG, find, problems_of, tiny_tables, write_trial


# ------------------------------------------------------------------ the order of waves
def test_labels_are_text():
    assert [wave_label(v) for v in (2, 2.0, np.int64(3), " baseline ", "", None, np.nan)] == [
        "2",
        "2",
        "3",
        "baseline",
        None,
        None,
        None,
    ]
    assert wave_label(dt.date(2024, 1, 31)) == "2024-01-31"
    assert wave_label(pd.Timestamp("2024-01-31")) == "2024-01-31"


def test_integer_waves_numerically():
    assert wave_order([10, 2, 1, 2]) == ["1", "2", "10"]
    assert wave_order(["10", "2", "01"]) == ["01", "2", "10"]


def test_dates_chronologically():
    assert wave_order(["2024-03-01", "2023-12-15", "2024-01-31"]) == [
        "2023-12-15",
        "2024-01-31",
        "2024-03-01",
    ]
    # any parseable dates, not only ISO ones: chronological, not by text
    assert wave_order(["March 2024", "December 2023"]) == ["December 2023", "March 2024"]


def test_other_labels_naturally_alphabetical_unless_listed():
    assert wave_order(["follow-up", "baseline"]) == ["baseline", "follow-up"]
    assert wave_order(["2024-Q10", "2024-Q2"]) == ["2024-Q2", "2024-Q10"]  # digit runs as numbers
    assert wave_order(["pre", "post"]) == ["post", "pre"]  # alphabetical: the key fixes it
    assert wave_order(["post", "pre", "post"], ["pre", "post"]) == ["pre", "post"]
    assert wave_order([2, 1], [2, 1]) == ["2", "1"]  # listed beats numeric
    assert wave_order(["pre"], ["pre", "post"]) == ["pre"]  # a listed wave not (yet) surveyed


def test_unlisted_wave_is_an_error():
    with pytest.raises(ValueError, match=r"wave\(s\) mid not listed in alignment.waves \(pre, post\)"):
        wave_order(["pre", "mid", "post"], ["pre", "post"])


def test_resolve_wave_by_label_or_first():
    assert resolve_wave(None, ["pre", "post"]) == "pre"
    assert resolve_wave("post", ["pre", "post"]) == "post"
    assert resolve_wave(2, ["1", "2"]) == "2"
    with pytest.raises(ValueError, match="no wave 'mid' .*waves: pre, post"):
        resolve_wave("mid", ["pre", "post"])


def test_file_order_reads_wave_order_not_text():
    table = pd.DataFrame({"wave": ["post", "pre", "post"], "wave_order": [2, 1, 2]})
    assert file_order(table) == ["pre", "post"]


# ------------------------------------------------------------------ config
def _raw(**alignment):
    raw = yaml.safe_load(yaml.safe_dump(RAW_CONFIG))
    raw["alignment"].update(alignment)
    raw["data"] = {"clusters": "clusters.csv", "patients": "patients.csv", "survey": "survey.csv"}
    return raw


def test_config_wave_labels():
    assert validate_trial_config(_raw())["alignment"]["wave"] is None  # = the first wave
    assert validate_trial_config(_raw(wave=2))["alignment"]["wave"] == "2"
    cfg = validate_trial_config(
        _raw(waves=[dt.date(2024, 1, 31), dt.date(2024, 6, 30)], wave=dt.date(2024, 6, 30))
    )
    assert cfg["alignment"]["waves"] == ["2024-01-31", "2024-06-30"]
    assert cfg["alignment"]["wave"] == "2024-06-30"
    with pytest.raises(
        QialignError, match=r"alignment/wave: 'mid' is not one of alignment.waves \(pre, post\)"
    ):
        validate_trial_config(_raw(waves=["pre", "post"], wave="mid"))


# ------------------------------------------------------------------ validation of the survey
def _labelled(tables, labels):
    survey = tables["survey"]
    survey["wave"] = [labels[i % len(labels)] for i in range(len(survey))]


def test_unlisted_survey_wave_names_file_column_rows(tmp_path):
    tables, raw = tiny_tables()
    _labelled(tables, ["baseline", "follow-up", "folow-up"])
    raw["alignment"]["waves"] = ["baseline", "follow-up"]
    cfg = write_trial(tmp_path, tables, raw)
    err = problems_of(cfg)
    p = find(err, "survey", "wave", cfg, "a wave listed in alignment.waves (baseline, follow-up)")
    assert p.rows == list(range(3, len(tables["survey"]) + 1, 3)) and p.count == len(tables["survey"]) // 3
    text = str(err)
    assert cfg["data"]["survey"] in text and "column 'wave'" in text and "'folow-up'" in text


def test_moderator_wave_absent_from_survey(tmp_path):
    tables, raw = tiny_tables()
    _labelled(tables, ["baseline", "follow-up"])
    raw["alignment"].update(source="survey", wave="6-month")
    cfg = write_trial(tmp_path, tables, raw)
    find(
        problems_of(cfg),
        "survey",
        "wave",
        cfg,
        "'6-month' of alignment.wave among the survey's waves (baseline, follow-up)",
    )


def test_labelled_and_dated_surveys_load(tmp_path):
    tables, raw = tiny_tables()
    _labelled(tables, ["baseline", "follow-up"])
    trial = load_trial(write_trial(tmp_path / "a", tables, raw))
    assert set(trial.survey["wave"]) == {"baseline", "follow-up"}
    tables["survey"]["wave"] = pd.to_datetime(["2024-01-31", "2024-06-30"] * (len(tables["survey"]) // 2))
    trial = load_trial(write_trial(tmp_path / "b", tables, raw, fmt="parquet"))
    assert set(trial.survey["wave"]) == {"2024-01-31", "2024-06-30"}
    tables["survey"] = tables["survey"].drop(columns="wave")
    assert set(load_trial(write_trial(tmp_path / "c", tables, raw)).survey["wave"]) == {"1"}


# ------------------------------------------------------------------ scores and change
def _two_waves(labels):
    """Wave 1: cluster A aligned (1), B opposed (0); wave 2 the other way round."""
    base = hand_computed_survey()  # test_alignment_descriptive's survey
    later = base.assign(respondent=base["respondent"] + 8, cluster=base["cluster"].map({"A": "B", "B": "A"}))
    return pd.concat([base.assign(wave=labels[0]), later.assign(wave=labels[1])], ignore_index=True)


def test_descriptive_scores_and_change_with_labels():
    cfg = {**CFG, "waves": ["pre", "post"]}
    scores = descriptive_scores(_two_waves(["pre", "post"]), cfg, ["A", "B"], seed=1, n_boot=50)
    assert scores[["wave", "wave_order", "cluster"]].values.tolist() == [
        ["pre", 1, "A"],
        ["pre", 1, "B"],
        ["post", 2, "A"],
        ["post", 2, "B"],
    ]
    assert scores["alignment"].tolist() == pytest.approx([1.0, 0.0, 0.0, 1.0])
    integer = descriptive_scores(_two_waves([1, 2]), CFG, ["A", "B"], seed=1, n_boot=50)
    assert integer["wave"].tolist() == ["1", "1", "2", "2"]
    cols = ["alignment", "alignment_sd", "lower", "upper"]
    np.testing.assert_array_equal(scores[cols].to_numpy(), integer[cols].to_numpy())  # same numbers

    change = alignment_change(scores).set_index("cluster")
    assert (change["wave_from"] == "pre").all() and (change["wave_to"] == "post").all()
    assert (change["wave_to_order"] == 2).all()
    assert change["difference"].tolist() == pytest.approx([-1.0, 1.0])
    # without alignment.waves, 'post' sorts before 'pre': the change runs the other way
    natural = alignment_change(
        descriptive_scores(_two_waves(["pre", "post"]), CFG, ["A", "B"], seed=1, n_boot=50)
    )
    assert natural["wave_from"].iloc[0] == "post"
    assert natural["difference"].tolist() == pytest.approx([1.0, -1.0])


def test_latent_data_waves_in_listed_order():
    cfg = {**CFG, "waves": ["pre", "post"]}
    data = survey_long(_two_waves(["pre", "post"]), cfg, ["A", "B"])
    ints = survey_long(_two_waves([1, 2]), CFG, ["A", "B"])
    assert data.waves == ["pre", "post"] and ints.waves == ["1", "2"]
    np.testing.assert_array_equal(data.cell, ints.cell)
    assert data.counts["wave"].tolist() == ["pre", "pre", "post", "post"]


def test_moderator_picks_wave_by_label_and_defaults_to_first(tmp_path):
    path = tmp_path / "scores.csv"
    # rows written later wave first: the order is wave_order, never the text or the row order
    pd.DataFrame(
        {
            "cluster": ["A", "B", "C", "A", "B", "C"],
            "wave": ["post", "post", "post", "pre", "pre", "pre"],
            "wave_order": [2, 2, 2, 1, 1, 1],
            "alignment": [0.9, 0.1, 0.5, 0.2, 0.4, 0.3],
        }
    ).to_csv(path, index=False)
    first, *_ = moderator_alignment(path, None, ["A", "B", "C"])
    assert first.tolist() == [0.2, 0.4, 0.3]
    post, *_ = moderator_alignment(path, "post", ["A", "B", "C"])
    assert post.tolist() == [0.9, 0.1, 0.5]
    with pytest.raises(QialignError, match=r"scores.csv: no wave 'mid' \(alignment.wave\); waves: pre, post"):
        moderator_alignment(path, "mid", ["A", "B", "C"])
    assert read_results_csv(path)["wave"].tolist()[:1] == ["post"]


def test_alphabetical_order_is_said(capsys):
    from qialign.steps.alignment import _order_note

    _order_note(pd.Series(["pre", "post"]), {"waves": None})
    assert "natural (alphabetical) order: post, pre" in capsys.readouterr().out
    _order_note(pd.Series(["pre", "post"]), {"waves": ["pre", "post"]})
    _order_note(pd.Series(["2", "1"]), {})
    assert capsys.readouterr().out == ""
