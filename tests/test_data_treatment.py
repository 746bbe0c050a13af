"""A user's treatment column (contract name ``treated``) checked against clusters.start_period.

Tiny trial rows: cluster_periods has one row per cell, A1 periods 1..5 in rows 1..5, A2 in 6..10,
B1 in 11..15, B2 in 16..20; patients has three rows per cell (A1 period 1 in rows 1..3). Starts:
A1 2, A2 3, B1 4, B2 5.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from qialign.data import load_trial
from test_data_helpers import (
    STARTS,
    find,
    problems_of,
    put,
    tiny_tables,
    validate_concurrently,
    write_trial,
)


def with_treatment(tables, table="cluster_periods", column="treated"):
    df = tables[table]
    df[column] = (df["period"] >= df["cluster"].map(STARTS)).astype(int)
    return df


def test_consistent_treatment_columns_are_valid(tmp_path):
    tables, raw = tiny_tables()
    with_treatment(tables, "cluster_periods")
    with_treatment(tables, "patients", "on_intervention")
    raw["columns"] = {"patients": {"treated": "on_intervention"}}
    trial = load_trial(write_trial(tmp_path, tables, raw))
    cp = trial.cluster_periods.set_index(["cluster", "period"])
    assert cp.loc["A2", "treated"].tolist() == [0, 0, 1, 1, 1]
    assert "on_intervention" not in trial.patients.columns
    assert trial.patients["treated"].sum() == 3 * (4 + 3 + 2 + 1)


def test_inconsistent_rows_are_named_with_the_start_period(tmp_path):
    tables, raw = tiny_tables()
    cp = with_treatment(tables)
    put(cp, "treated", 6, 1)  # A2 period 2 (row 7), before its start 3
    put(cp, "treated", 13, 0)  # B1 period 4 (row 14), its start
    cfg = write_trial(tmp_path, tables, raw)
    err = problems_of(cfg)
    assert len(err.problems) == 2, str(err)
    a2 = find(err, "cluster_periods", "treated", cfg, "cluster A2")
    assert a2.expected == (
        "expected 1 from period 3 (start_period of cluster A2) and 0 before it; found 1 in period(s) 2"
    )
    assert (a2.rows, a2.count) == ([7], 1)
    b1 = find(err, "cluster_periods", "treated", cfg, "cluster B1")
    assert b1.expected == (
        "expected 1 from period 4 (start_period of cluster B1) and 0 before it; found 0 in period(s) 4"
    )
    assert (b1.rows, b1.count) == ([14], 1)


def test_treatment_that_switches_off_is_said_to(tmp_path):
    tables, raw = tiny_tables()
    cp = with_treatment(tables)
    put(cp, "treated", [3, 4], 0)  # A1 periods 4 and 5 (rows 4, 5) after 1 in periods 2, 3
    cfg = write_trial(tmp_path, tables, raw)
    p = find(problems_of(cfg), "cluster_periods", "treated", cfg, "cluster A1")
    assert p.expected == (
        "expected 1 from period 2 (start_period of cluster A1) and 0 before it; found 0 in period(s) 4, 5; "
        "the treatment switches off (1 in period 2, then 0 in period 4): once started, the intervention "
        "must stay on"
    )
    assert (p.rows, p.count) == ([4, 5], 2)


def test_treated_patient_rows_of_a_never_starting_cluster(tmp_path):
    tables, raw = tiny_tables()
    put(tables["clusters"], "start_period", [2, 3], np.nan)
    tables["implementation"] = tables["implementation"][tables["implementation"]["cluster"].str[0] == "A"]
    raw["design"] = "controlled_before_after"
    pt = tables["patients"]
    pt["on_intervention"] = (pt["period"] >= pt["cluster"].map({"A1": 2, "A2": 3})).astype(int)
    put(pt, "on_intervention", [57, 59], 1)  # B2 period 5 (rows 46..60), first and third patient
    tables["clusters"] = tables["clusters"].rename(columns={"start_period": "go_live"})
    raw["columns"] = {"start_period": "go_live", "patients": {"treated": "on_intervention"}}
    cfg = write_trial(tmp_path, tables, raw)
    err = problems_of(cfg)
    assert len(err.problems) == 1, str(err)
    p = find(err, "patients", "on_intervention", cfg)
    assert p.expected == (
        "expected 0 in every period (cluster B2 never starts: its go_live is empty); found 1 in period(s) 5"
    )
    assert (p.rows, p.count) == ([58, 60], 2)


def test_treatment_values_must_be_0_or_1(tmp_path):
    tables, raw = tiny_tables()
    cp = with_treatment(tables)
    put(cp, "treated", [0, 9], 2)
    put(cp, "treated", 2, "yes")
    cfg = write_trial(tmp_path, tables, raw)
    err = problems_of(cfg)
    assert len(err.problems) == 2, str(err)  # the values, not also a schedule mismatch
    p = find(err, "cluster_periods", "treated", cfg, "0 or 1 (treatment indicator)")
    assert (p.rows, p.expected) == (
        [1, 10],
        "expected 0 or 1 (treatment indicator); found '2'",
    )  # a text column: values quoted
    q = find(err, "cluster_periods", "treated", cfg, "a number")
    assert (q.rows, q.expected) == ([3], "expected a number; found 'yes'")


def test_missing_treatment_values_are_not_compared(tmp_path):
    tables, raw = tiny_tables()
    cp = with_treatment(tables)
    put(cp, "treated", [0, 6], np.nan)
    trial = load_trial(write_trial(tmp_path, tables, raw))
    assert trial.cluster_periods["treated"].tolist()[:7] == [0, 1, 1, 1, 1, 0, 0]


# ------------------------------------------------------------------ qialign validate (CLI)
def _renamed(d: Path) -> dict:
    tables, raw = tiny_tables()
    with_treatment(tables, "patients", "on_intervention")
    for name in tables:
        tables[name] = tables[name].rename(columns={"cluster": "ward"})
    tables["survey"] = tables["survey"].rename(columns={"respondent": "id"})
    raw["columns"] = {
        "cluster": "ward",
        "survey": {"respondent": "id"},
        "patients": {"treated": "on_intervention"},
    }
    return write_trial(d, tables, raw)


def _bad_treatment(d: Path) -> dict:
    tables, raw = tiny_tables()
    cp = with_treatment(tables)
    put(cp, "treated", 4, 0)  # A1 period 5 (row 5)
    return write_trial(d, tables, raw)


@pytest.fixture(scope="module")
def cli_runs(tmp_path_factory):
    """``qialign validate`` on both configs, concurrently (each subprocess pays the import cost)."""
    return validate_concurrently(tmp_path_factory, {"renamed": _renamed, "bad": _bad_treatment})


def test_cli_validate_per_table_renames_exit_0(cli_runs):
    _, code, stdout, stderr = cli_runs["renamed"]
    assert code == 0, stdout + stderr
    assert "Survey: 12 respondents" in stdout


def test_cli_validate_bad_treatment_exit_2_no_traceback(cli_runs):
    cfg, code, stdout, stderr = cli_runs["bad"]
    assert code == 2
    assert "Traceback" not in stdout + stderr
    assert f"{cfg['data']['cluster_periods']}, column 'treated': expected 1 from period 2" in stderr
    assert "the treatment switches off (1 in period 2, then 0 in period 5)" in stderr
    assert "1 row(s): 5" in stderr
