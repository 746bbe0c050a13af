"""Every validation rule: a malformed tiny trial gives a DataValidationError naming file, column, rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from qialign.data import load_trial
from qialign.errors import DataValidationError, QialignError
from test_data_helpers import find, problems_of, put, tiny_tables, write_trial


def broken(tmp_path, change, raw_change=None):
    """Write the tiny trial after ``change(tables)`` (and ``raw_change(raw)``); return err, cfg."""
    tables, raw = tiny_tables()
    change(tables)
    if raw_change:
        raw_change(raw)
    cfg = write_trial(tmp_path, tables, raw)
    err = problems_of(cfg)
    return err, cfg


def assert_rows(problem, rows):
    assert problem.rows[: len(rows)] == rows, problem.render()
    assert problem.count == len(rows)


def test_message_names_file_column_rows_expected(tmp_path):
    err, cfg = broken(tmp_path, lambda t: put(t["patients"], "excess", [2, 4], 2))
    text = str(err)
    assert cfg["data"]["patients"] in text
    assert "column 'excess'" in text
    assert "2 row(s): 3, 5" in text
    assert "0 or 1" in text and "found 2" in text
    assert err.trial == "tiny"


def test_all_problems_across_tables_are_collected(tmp_path):
    def change(t):
        put(t["patients"], "excess", 0, 3)
        put(t["cluster_periods"], "n", 1, 0)
        put(t["survey"], "q1", 2, 9)

    err, cfg = broken(tmp_path, change)
    files = {p.file for p in err.problems}
    assert {cfg["data"][k] for k in ("patients", "cluster_periods", "survey")} <= files


# ------------------------------------------------------------------ columns and types
def test_missing_required_column_lists_present_columns(tmp_path):
    err, cfg = broken(tmp_path, lambda t: t.__setitem__("patients", t["patients"].drop(columns="period")))
    p = find(err, "patients", "period", cfg, "required column 'period' is missing")
    assert "columns present: id, cluster, excess" in p.expected


@pytest.mark.parametrize("value", [1.5, "x"])
def test_period_must_be_integer(tmp_path, value):
    err, cfg = broken(tmp_path, lambda t: put(t["patients"], "period", 6, value))
    assert_rows(find(err, "patients", "period", cfg, "an integer period"), [7])


def test_period_not_missing(tmp_path):
    err, cfg = broken(tmp_path, lambda t: put(t["patients"], "period", 6, np.nan))
    assert_rows(find(err, "patients", "period", cfg, "no missing values"), [7])


def test_cluster_not_missing(tmp_path):
    err, cfg = broken(tmp_path, lambda t: put(t["patients"], "cluster", 3, np.nan))
    assert_rows(find(err, "patients", "cluster", cfg, "no missing values"), [4])


def test_outcome_must_be_numeric(tmp_path):
    err, cfg = broken(tmp_path, lambda t: put(t["patients"], "score", [0, 9], "high"))
    assert_rows(find(err, "patients", "score", cfg, "a finite number"), [1, 10])


def test_outcome_column_missing(tmp_path):
    def change(t):
        t["patients"] = t["patients"].drop(columns="score")

    def raw_change(raw):
        raw["outcomes"]["score"]["table"] = "patients"

    err, cfg = broken(tmp_path, change, raw_change)
    find(err, "patients", "score", cfg, "required column 'score' is missing")


# ------------------------------------------------------------------ ranges by family
def test_bernoulli_in_0_1(tmp_path):
    err, cfg = broken(tmp_path, lambda t: put(t["patients"], "excess", [0, 11], [-1, 2]))
    assert_rows(find(err, "patients", "excess", cfg, "0 or 1"), [1, 12])


@pytest.mark.parametrize("value", [-1, 2.5])
def test_count_whole_and_nonnegative(tmp_path, value):
    err, cfg = broken(tmp_path, lambda t: put(t["cluster_periods"], "incidents", 4, value))
    assert_rows(find(err, "cluster_periods", "incidents", cfg, "whole number >= 0"), [5])


def test_events_at_most_n(tmp_path):
    def change(t):
        t["cluster_periods"]["falls"] = 1
        put(t["cluster_periods"], "falls", 3, 4)  # n = 3

    def raw_change(raw):
        raw["outcomes"]["falls"] = {"family": "binomial"}

    err, cfg = broken(tmp_path, change, raw_change)
    assert_rows(find(err, "cluster_periods", "falls", cfg, "at most the value of 'n'"), [4])


def test_events_at_most_trials_column(tmp_path):
    def change(t):
        t["cluster_periods"]["falls"] = 1
        t["cluster_periods"]["at_risk"] = 2
        put(t["cluster_periods"], "at_risk", 5, 0)

    def raw_change(raw):
        raw["outcomes"]["falls"] = {"family": "binomial", "trials": "at_risk"}

    err, cfg = broken(tmp_path, change, raw_change)
    assert_rows(find(err, "cluster_periods", "falls", cfg, "at most the value of 'at_risk'"), [6])
    assert_rows(find(err, "cluster_periods", "at_risk", cfg, "trials >= 1"), [6])


def test_n_at_least_one(tmp_path):
    err, cfg = broken(tmp_path, lambda t: put(t["cluster_periods"], "n", [2, 3], [0, 1.5]))
    assert_rows(find(err, "cluster_periods", "n", cfg, "patients >= 1"), [3])
    assert_rows(find(err, "cluster_periods", "n", cfg, "a whole number of patients;"), [4])


def test_exposure_positive(tmp_path):
    err, cfg = broken(tmp_path, lambda t: put(t["cluster_periods"], "bed_days", [0, 7], [0, -2]))
    assert_rows(find(err, "cluster_periods", "bed_days", cfg, "exposure > 0"), [1, 8])


def test_exposure_given_with_count(tmp_path):
    err, cfg = broken(tmp_path, lambda t: put(t["cluster_periods"], "bed_days", 2, np.nan))
    assert_rows(find(err, "cluster_periods", "bed_days", cfg, "exposure wherever"), [3])


def test_exposure_column_missing(tmp_path):
    err, cfg = broken(
        tmp_path, lambda t: t.__setitem__("cluster_periods", t["cluster_periods"].drop(columns="bed_days"))
    )
    find(err, "cluster_periods", "bed_days", cfg, "required column 'bed_days'")


def test_lognormal_positive(tmp_path):
    err, cfg = broken(tmp_path, lambda t: put(t["patients"], "los", [1, 2], [0, -3.2]))
    assert_rows(find(err, "patients", "los", cfg, "> 0 (lognormal)"), [2, 3])


def test_cell_gaussian_sd_nonnegative(tmp_path):
    def change(t):
        t["patients"] = t["patients"].drop(columns="score")
        t["cluster_periods"]["score_mean"] = 10.0
        t["cluster_periods"]["score_sd"] = 1.0
        put(t["cluster_periods"], "score_sd", 0, -1)

    err, cfg = broken(tmp_path, change)
    assert_rows(find(err, "cluster_periods", "score_sd", cfg, "SD >= 0"), [1])


def test_cell_gaussian_columns_required(tmp_path):
    err, cfg = broken(tmp_path, lambda t: t.__setitem__("patients", t["patients"].drop(columns="score")))
    find(err, "cluster_periods", "score_mean", cfg, "required column 'score_mean'")
    find(err, "cluster_periods", "score_sd", cfg, "required column 'score_sd'")


# ------------------------------------------------------------------ survey
@pytest.mark.parametrize("value", [6, 2.5, "agree"])
def test_likert_integer_in_scale(tmp_path, value):
    err, cfg = broken(tmp_path, lambda t: put(t["survey"], "q2", 3, value))
    p = [q for q in err.problems if q.column == "q2"]
    assert len(p) == 1 and p[0].rows == [4], str(err)
    assert cfg["data"]["survey"] == p[0].file


def test_likert_missing_allowed(tmp_path):
    tables, raw = tiny_tables()
    put(tables["survey"], "q2", 3, np.nan)
    trial = load_trial(write_trial(tmp_path, tables, raw))
    assert trial.survey["q2"].isna().sum() == 1


def test_unknown_role(tmp_path):
    err, cfg = broken(tmp_path, lambda t: put(t["survey"], "role", [0, 5], "porter"))
    p = find(err, "survey", "role", cfg, "a role listed in alignment.roles")
    assert_rows(p, [1, 6])
    assert "porter" in p.expected


def test_survey_item_absent(tmp_path):
    err, cfg = broken(tmp_path, lambda t: t.__setitem__("survey", t["survey"].drop(columns="q3")))
    find(err, "survey", "q3", cfg, "required column 'q3' is missing")


def test_reverse_item_not_a_domain_item(tmp_path):
    err, cfg = broken(tmp_path, lambda t: None, lambda raw: raw["alignment"].update(reverse=["q9"]))
    find(err, "survey", "q9", cfg, "reverse item 'q9'")


def test_unique_respondent(tmp_path):
    err, cfg = broken(tmp_path, lambda t: put(t["survey"], "respondent", 4, "R1"))
    assert_rows(find(err, "survey", "respondent", cfg, "unique"), [1, 5])


def test_wave_not_missing(tmp_path):
    # any integer, label or date is a wave (tests/test_waves.py); a missing one is not
    err, cfg = broken(tmp_path, lambda t: put(t["survey"], "wave", 2, np.nan))
    assert_rows(find(err, "survey", "wave", cfg, "no missing values"), [3])


# ------------------------------------------------------------------ implementation
@pytest.mark.parametrize("value", [-0.1, np.inf, "often"])
def test_fidelity_finite_nonnegative(tmp_path, value):
    err, cfg = broken(tmp_path, lambda t: put(t["implementation"], "fidelity", 1, value))
    p = [q for q in err.problems if q.column == "fidelity"]
    assert len(p) == 1 and p[0].rows == [2], str(err)


def test_fidelity_above_one_allowed(tmp_path):
    tables, raw = tiny_tables()
    put(tables["implementation"], "fidelity", 0, 3.0)  # e.g. briefings per day
    load_trial(write_trial(tmp_path, tables, raw))


def test_implementation_unique_cells(tmp_path):
    def change(t):
        imp = t["implementation"]
        t["implementation"] = pd.concat([imp, imp.iloc[[0]]], ignore_index=True)

    err, cfg = broken(tmp_path, change)
    p = find(err, "implementation", "period", cfg, "one row per (cluster, period)")
    assert p.rows == [1, 11]


# ------------------------------------------------------------------ referential integrity, uniqueness
@pytest.mark.parametrize("table", ["patients", "cluster_periods", "survey", "implementation"])
def test_cluster_must_exist(tmp_path, table):
    err, cfg = broken(tmp_path, lambda t: put(t[table], "cluster", 1, "ZZ"))
    p = find(err, table, "cluster", cfg, "a cluster id listed in the clusters table")
    assert_rows(p, [2])
    assert "'ZZ'" in p.expected


def test_unique_cluster_ids(tmp_path):
    err, cfg = broken(tmp_path, lambda t: put(t["clusters"], "cluster", 3, "A1"))
    assert_rows(find(err, "clusters", "cluster", cfg, "unique"), [1, 4])


def test_unique_patient_ids(tmp_path):
    err, cfg = broken(tmp_path, lambda t: put(t["patients"], "id", [5, 6], "P001"))
    assert_rows(find(err, "patients", "id", cfg, "unique"), [1, 6, 7])


def test_unique_cluster_period_cells(tmp_path):
    err, cfg = broken(tmp_path, lambda t: put(t["cluster_periods"], "period", 1, 1))
    assert_rows(find(err, "cluster_periods", "period", cfg, "one row per (cluster, period)"), [1, 2])


# ------------------------------------------------------------------ covariates
def test_covariate_absent(tmp_path):
    err, cfg = broken(tmp_path, lambda t: None, lambda raw: raw["covariates"].append("frailty"))
    p = find(err, "patients", "frailty", cfg, "covariate 'frailty'")
    assert "columns present" in p.expected


def test_covariate_non_numeric(tmp_path):
    err, cfg = broken(tmp_path, lambda t: put(t["patients"], "age", [3, 4], ["old", "young"]))
    assert_rows(find(err, "patients", "age", cfg, "numeric values"), [4, 5])


def test_cluster_level_covariate_allowed(tmp_path):
    tables, raw = tiny_tables()
    tables["clusters"]["beds"] = [20, 24, 18, 30]
    raw["covariates"] = ["age", "beds"]
    trial = load_trial(write_trial(tmp_path, tables, raw))
    from qialign.data import analysis_rows

    rows = analysis_rows(trial, "incidents")  # cluster_periods outcome: cluster covariate only
    assert list(rows["beds"][:5]) == [20.0] * 5
    assert "age" not in rows.columns


# ------------------------------------------------------------------ start_period and design
@pytest.mark.parametrize("value", [2.5, "soon"])
def test_start_period_integer(tmp_path, value):
    err, cfg = broken(tmp_path, lambda t: put(t["clusters"], "start_period", 1, value))
    assert_rows(find(err, "clusters", "start_period", cfg, "an integer period"), [2])


def test_start_period_inside_range(tmp_path):
    err, cfg = broken(tmp_path, lambda t: put(t["clusters"], "start_period", [1, 2], [0, 7]))
    assert_rows(find(err, "clusters", "start_period", cfg, "inside the period range 1..5"), [2, 3])


def test_stepped_wedge_every_cluster_starts(tmp_path):
    err, cfg = broken(tmp_path, lambda t: put(t["clusters"], "start_period", 3, np.nan))
    assert_rows(find(err, "clusters", "start_period", cfg, "every cluster to start"), ["B2"])


def test_stepped_wedge_control_cells(tmp_path):
    err, cfg = broken(tmp_path, lambda t: put(t["clusters"], "start_period", 0, 1))
    assert_rows(find(err, "clusters", "start_period", cfg, "control periods"), ["A1"])


def test_stepped_wedge_staggered(tmp_path):
    err, cfg = broken(tmp_path, lambda t: put(t["clusters"], "start_period", [0, 1, 2, 3], 3))
    find(err, "clusters", "start_period", cfg, "staggered starts")


def test_cba_needs_controls(tmp_path):
    err, cfg = broken(tmp_path, lambda t: None, lambda raw: raw.update(design="controlled_before_after"))
    find(err, "clusters", "start_period", cfg, "some clusters that never start")


def test_cba_needs_starters(tmp_path):
    err, cfg = broken(
        tmp_path,
        lambda t: put(t["clusters"], "start_period", [0, 1, 2, 3], np.nan),
        lambda raw: raw.update(design="controlled_before_after"),
    )
    find(err, "clusters", "start_period", cfg, "some clusters that start")
    find(err, "clusters", "start_period", cfg, "some treated cells")


def test_cba_valid(tmp_path):
    tables, raw = tiny_tables()
    put(tables["clusters"], "start_period", [0, 1, 2, 3], [3, 3, np.nan, np.nan])
    tables["implementation"] = tables["implementation"].iloc[0:0]
    raw["design"] = "controlled_before_after"
    trial = load_trial(write_trial(tmp_path, tables, raw))
    assert trial.clusters["start_period"].isna().sum() == 2


def test_its_common_start_and_pre_post(tmp_path):
    def change(t):
        put(t["clusters"], "start_period", [0, 1, 2, 3], [3, 3, 4, 1])

    err, cfg = broken(tmp_path, change, lambda raw: raw.update(design="interrupted_time_series"))
    find(err, "clusters", "start_period", cfg, "one common start period")
    assert_rows(find(err, "clusters", "start_period", cfg, "data before and after"), ["B2"])


def test_its_no_controls(tmp_path):
    err, cfg = broken(
        tmp_path,
        lambda t: put(t["clusters"], "start_period", [0, 1, 2, 3], [3, 3, 3, np.nan]),
        lambda raw: raw.update(design="interrupted_time_series"),
    )
    assert_rows(find(err, "clusters", "start_period", cfg, "every series to start"), ["B2"])


def test_no_control_cells(tmp_path):
    err, cfg = broken(
        tmp_path,
        lambda t: put(t["clusters"], "start_period", [0, 1, 2, 3], 1),
        lambda raw: raw.update(design="interrupted_time_series"),
    )
    find(err, "clusters", "start_period", cfg, "some control cells")


def test_cluster_without_data(tmp_path):
    def change(t):
        t["clusters"].loc[4] = ["C9", "S2", 3]

    err, cfg = broken(tmp_path, change)
    p = find(err, "clusters", "cluster", cfg, "data for every cluster")
    assert_rows(p, ["C9"])


def test_period_without_data(tmp_path):
    def change(t):
        for name in ("patients", "cluster_periods"):
            t[name] = t[name][t[name]["period"] != 3].reset_index(drop=True)
        t["implementation"] = t["implementation"][t["implementation"]["period"] != 3]

    tables, raw = tiny_tables()
    change(tables)
    cfg = write_trial(tmp_path, tables, raw)
    err = problems_of(cfg)
    p = [q for q in err.problems if q.column == "period" and "every period" in q.expected]
    assert p and p[0].rows == [3], str(err)
    assert cfg["data"]["patients"] in p[0].file


def test_alignment_given_requires_column(tmp_path):
    err, cfg = broken(tmp_path, lambda t: None, lambda raw: raw["alignment"].update(source="given"))
    find(err, "clusters", "alignment", cfg, "required column 'alignment'")


def test_alignment_numeric(tmp_path):
    err, cfg = broken(tmp_path, lambda t: t["clusters"].__setitem__("alignment", [0.1, "x", 0.3, 0.2]))
    assert_rows(find(err, "clusters", "alignment", cfg, "a number"), [2])


def test_rename_clash(tmp_path):
    def change(t):
        t["patients"]["ward"] = t["patients"]["cluster"]

    err, cfg = broken(tmp_path, change, lambda raw: raw.update(columns={"cluster": "ward"}))
    find(err, "patients", "cluster", cfg, "renamed")


def test_renamed_column_is_named_as_the_user_wrote_it(tmp_path):
    def change(t):
        for name in t:
            t[name] = t[name].rename(columns={"cluster": "ward"})
        put(t["patients"], "ward", 0, "ZZ")

    err, cfg = broken(tmp_path, change, lambda raw: raw.update(columns={"cluster": "ward"}))
    assert_rows(find(err, "patients", "ward", cfg, "a cluster id"), [1])


# ------------------------------------------------------------------ files
def test_missing_file(tmp_path):
    tables, raw = tiny_tables()
    cfg = write_trial(tmp_path, tables, raw)
    cfg["data"]["survey"] = str(tmp_path / "nope.csv")
    with pytest.raises(QialignError, match="nope.csv: survey table not found"):
        load_trial(cfg)


def test_wrong_extension(tmp_path):
    tables, raw = tiny_tables()
    cfg = write_trial(tmp_path, tables, raw)
    bad = tmp_path / "patients.xlsx"
    bad.write_text("x")
    cfg["data"]["patients"] = str(bad)
    with pytest.raises(QialignError, match=r"patients.xlsx: patients table has extension '.xlsx'"):
        load_trial(cfg)


def test_unreadable_parquet(tmp_path):
    tables, raw = tiny_tables()
    cfg = write_trial(tmp_path, tables, raw)
    bad = tmp_path / "clusters.parquet"
    bad.write_bytes(b"not parquet at all")
    cfg["data"]["clusters"] = str(bad)
    with pytest.raises(QialignError, match="clusters.parquet: cannot read clusters table") as info:
        load_trial(cfg)
    assert not isinstance(info.value, DataValidationError)


def test_empty_csv(tmp_path):
    tables, raw = tiny_tables()
    cfg = write_trial(tmp_path, tables, raw)
    (tmp_path / "survey.csv").write_text("")
    with pytest.raises(QialignError, match="survey.csv: survey table is empty"):
        load_trial(cfg)


# ------------------------------------------------------------------ dates
def test_unparseable_and_early_dates(tmp_path):
    def change(t):
        p = t["patients"]
        p["admitted"] = "2024-0" + p["period"].astype(str) + "-10"
        put(p, "admitted", 2, "someday")
        put(p, "admitted", 4, "2023-11-01")
        t["patients"] = p.drop(columns="period")

    def raw_change(raw):
        raw["periods"] = {"date_column": "admitted", "unit": "month", "origin": "2024-01-01"}

    err, cfg = broken(tmp_path, change, raw_change)
    assert_rows(find(err, "patients", "admitted", cfg, "a date such as"), [3])
    assert_rows(find(err, "patients", "admitted", cfg, "on or after the period origin 2024-01-01"), [5])


def test_garbage_csv_is_reported_not_raised(tmp_path):
    tables, raw = tiny_tables()
    cfg = write_trial(tmp_path, tables, raw)
    with open(cfg["data"]["patients"], "wb") as fh:
        fh.write(b"\x00\xff\xfe garbage\n\x00\x01,\n")
    with pytest.raises(QialignError, match="patients.csv"):
        load_trial(cfg)


# ------------------------------------------------------------------ gaps a new user falls into
def test_rename_to_a_column_no_file_has(tmp_path):
    err, cfg = broken(tmp_path, lambda t: None, lambda raw: raw.update(columns={"cluster": "ward_code"}))
    p = find(err, "config", "columns/cluster", cfg, "a column 'ward_code' in one of")
    assert cfg["data"]["patients"] in p.expected


def test_header_only_table(tmp_path):
    err, cfg = broken(tmp_path, lambda t: t.__setitem__("patients", t["patients"].iloc[:0]))
    find(err, "patients", None, cfg, "data rows below the header; the table has none")


def test_outcome_with_no_analysable_rows(tmp_path):
    def change(t):
        t["patients"]["los"] = np.nan

    err, cfg = broken(tmp_path, change)
    p = find(err, "patients", "los", cfg, "some analysable rows for outcome 'los'")
    assert "all 60 rows are excluded (60 miss the outcome, 0 a covariate)" in p.expected


def test_start_period_after_the_last_period_with_data(tmp_path):
    err, cfg = broken(tmp_path, lambda t: put(t["clusters"], "start_period", 3, 9))
    p = find(err, "clusters", "start_period", cfg, "start after their last period with data")
    assert p.rows == ["B2"] or p.count == 1, p.render()
