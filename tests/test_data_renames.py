"""Config ``columns:`` renames: global, per table, overrides, absent columns, names in messages."""

from __future__ import annotations

import pytest

from qialign.config import validate_trial_config
from qialign.data import analysis_rows, load_trial
from qialign.errors import QialignError
from test_data_helpers import find, problems_of, put, tiny_tables, write_trial


def test_per_table_rename_of_survey_id_beside_the_patients_id(tmp_path):
    tables, raw = tiny_tables()
    tables["survey"] = tables["survey"].rename(columns={"respondent": "id"})
    raw["columns"] = {"survey": {"respondent": "id"}}
    trial = load_trial(write_trial(tmp_path, tables, raw))
    assert trial.survey["respondent"].tolist()[:3] == ["R1", "R2", "R3"]
    assert "id" not in trial.survey.columns
    # the patients' own id is untouched (a global {respondent: id} would rename it too)
    assert trial.patients["id"].tolist()[:2] == ["P001", "P002"]
    assert "respondent" not in trial.patients.columns


def test_per_table_rename_overrides_the_global_one(tmp_path):
    tables, raw = tiny_tables()
    for name in tables:
        tables[name] = tables[name].rename(columns={"cluster": "ward"})
    tables["patients"] = tables["patients"].rename(columns={"ward": "unit"})
    raw["columns"] = {"cluster": "ward", "patients": {"cluster": "unit"}}
    trial = load_trial(write_trial(tmp_path, tables, raw))
    assert sorted(set(trial.patients["cluster"])) == ["A1", "A2", "B1", "B2"]
    assert sorted(set(trial.survey["cluster"])) == ["A1", "A2", "B1", "B2"]
    assert {"ward", "unit"}.isdisjoint(trial.patients.columns)
    assert len(analysis_rows(trial, "excess")) == 60


def test_per_table_identity_cancels_a_global_rename(tmp_path):
    tables, raw = tiny_tables()
    for name in ("clusters", "patients", "cluster_periods", "implementation"):
        tables[name] = tables[name].rename(columns={"cluster": "ward"})
    raw["columns"] = {"cluster": "ward", "survey": {"cluster": "cluster"}}
    trial = load_trial(write_trial(tmp_path, tables, raw))
    assert sorted(set(trial.survey["cluster"])) == ["A1", "A2", "B1", "B2"]


def test_per_table_rename_to_a_column_only_another_table_has(tmp_path):
    # patients has an 'id' column, the survey does not: the survey's rename is checked on the survey
    tables, raw = tiny_tables()
    raw["columns"] = {"survey": {"respondent": "id"}}
    cfg = write_trial(tmp_path, tables, raw)
    err = problems_of(cfg)
    assert len(err.problems) == 1, str(err)
    p = find(err, "config", "columns/survey/respondent", cfg)
    assert p.expected == (
        f"a column 'id' in {cfg['data']['survey']} "
        "(columns present: respondent, cluster, role, wave, q1, q2, q3); it has none"
    )


def test_global_rename_is_checked_against_the_tables_it_applies_to(tmp_path):
    # 'ward' exists only in patients, which has its own cluster rename: the global one finds nothing
    tables, raw = tiny_tables()
    tables["patients"]["ward"] = "x"
    tables["patients"] = tables["patients"].rename(columns={"cluster": "unit"})
    raw["columns"] = {"cluster": "ward", "patients": {"cluster": "unit"}}
    cfg = write_trial(tmp_path, tables, raw)
    p = find(problems_of(cfg), "config", "columns/cluster", cfg, "a column 'ward' in one of")
    assert cfg["data"]["survey"] in p.expected and cfg["data"]["patients"] not in p.expected


def test_per_table_renames_for_a_table_the_config_does_not_give(tmp_path):
    tables, raw = tiny_tables()
    tables.pop("implementation")
    raw["columns"] = {"implementation": {"fidelity": "briefings"}}
    cfg = write_trial(tmp_path, tables, raw)
    p = find(problems_of(cfg), "config", "columns/implementation", cfg)
    assert p.expected == (
        "a data/implementation file (columns/implementation renames its columns); the config gives none"
    )


def test_messages_name_each_tables_own_column_names(tmp_path):
    tables, raw = tiny_tables()
    for name in tables:
        tables[name] = tables[name].rename(columns={"cluster": "ward"})
    tables["survey"] = tables["survey"].rename(columns={"ward": "unit"})
    put(tables["survey"], "unit", 1, "ZZ")
    put(tables["patients"], "ward", 4, "YY")
    raw["columns"] = {"cluster": "ward", "survey": {"cluster": "unit"}}
    cfg = write_trial(tmp_path, tables, raw)
    err = problems_of(cfg)
    survey = find(err, "survey", "unit", cfg, "a cluster id listed in the clusters table")
    patients = find(err, "patients", "ward", cfg, "a cluster id listed in the clusters table")
    assert (survey.rows, patients.rows) == ([2], [5])


def test_period_coverage_names_both_spellings_of_period(tmp_path):
    tables, raw = tiny_tables()
    for name in ("patients", "cluster_periods"):
        tables[name] = tables[name][tables[name]["period"] != 3].reset_index(drop=True)
    tables["implementation"] = tables["implementation"][tables["implementation"]["period"] != 3]
    tables["patients"] = tables["patients"].rename(columns={"period": "month"})
    raw["columns"] = {"patients": {"period": "month"}}
    cfg = write_trial(tmp_path, tables, raw)
    err = problems_of(cfg)
    p = find(err, "patients", "month (patients) / period (cluster_periods)", cfg, "every period")
    assert p.rows == [3]


@pytest.mark.parametrize(
    "columns, where",
    [({"survey": "respondent_id"}, "columns/survey"), ({"ward": {"cluster": "x"}}, "columns/ward")],
)
def test_schema_table_maps_only_under_table_names(columns, where):
    _, raw = tiny_tables()
    raw["data"] = {"clusters": "c.csv", "patients": "p.csv"}
    raw["columns"] = columns
    with pytest.raises(QialignError) as info:
        validate_trial_config(raw)
    assert f"- {where}: " in str(info.value)
