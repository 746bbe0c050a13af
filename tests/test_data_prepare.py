"""Derived columns, renames, date binning, Parquet, exclusions and analysis rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from qialign.data import analysis_rows, bin_dates, file_hashes, load_trial, sha256_file
from test_data_helpers import STARTS, put, tiny_tables, write_trial


@pytest.fixture
def trial(tmp_path):
    tables, raw = tiny_tables()
    return load_trial(write_trial(tmp_path, tables, raw))


def test_treated_and_exposure_time_exact(trial):
    cp = trial.cluster_periods.set_index(["cluster", "period"])
    expected_treated = {
        "A1": [0, 1, 1, 1, 1],
        "A2": [0, 0, 1, 1, 1],
        "B1": [0, 0, 0, 1, 1],
        "B2": [0, 0, 0, 0, 1],
    }
    expected_exposure = {
        "A1": [0, 1, 2, 3, 4],
        "A2": [0, 0, 1, 2, 3],
        "B1": [0, 0, 0, 1, 2],
        "B2": [0, 0, 0, 0, 1],
    }
    for c in STARTS:
        assert cp.loc[c, "treated"].tolist() == expected_treated[c]
        assert cp.loc[c, "exposure_time"].tolist() == expected_exposure[c]
    p = trial.patients
    assert (p["treated"] == (p["period"] >= p["cluster"].map(STARTS)).astype(int)).all()
    assert p["site"].tolist()[:3] == ["S1"] * 3
    assert p["treated"].dtype == "int64" and p["exposure_time"].dtype == "int64"


def test_contract_dtypes(trial):
    assert trial.clusters["start_period"].dtype == "Int64"
    assert pd.api.types.is_string_dtype(trial.clusters["cluster"])
    assert trial.cluster_periods["n"].dtype == "int64"
    assert trial.periods == [1, 2, 3, 4, 5]


def test_never_starting_cluster_is_control(tmp_path):
    tables, raw = tiny_tables()
    put(tables["clusters"], "start_period", [2, 3], np.nan)
    tables["implementation"] = tables["implementation"][tables["implementation"]["cluster"].str[0] == "A"]
    raw["design"] = "controlled_before_after"
    trial = load_trial(write_trial(tmp_path, tables, raw))
    b = trial.patients[trial.patients["cluster"].str.startswith("B")]
    assert (b["treated"] == 0).all() and (b["exposure_time"] == 0).all()


def test_site_defaults_to_all(tmp_path):
    tables, raw = tiny_tables()
    tables["clusters"] = tables["clusters"].drop(columns="site")
    trial = load_trial(write_trial(tmp_path, tables, raw))
    assert set(trial.clusters["site"]) == {"all"}
    assert set(analysis_rows(trial, "excess")["site"]) == {"all"}


def test_renames_apply_to_every_table(tmp_path):
    tables, raw = tiny_tables()
    for name in tables:
        tables[name] = tables[name].rename(columns={"cluster": "ward", "period": "month"})
    tables["patients"] = tables["patients"].rename(columns={"excess": "excess_stay"})
    raw["columns"] = {"cluster": "ward", "period": "month", "excess": "excess_stay"}
    trial = load_trial(write_trial(tmp_path, tables, raw))
    assert {"cluster", "period", "excess"} <= set(trial.patients.columns)
    assert "ward" not in trial.patients.columns
    assert len(analysis_rows(trial, "excess")) == 60


def test_integer_cluster_ids_become_strings(tmp_path):
    tables, raw = tiny_tables()
    ids = {"A1": 1, "A2": 2, "B1": 3, "B2": 4}
    for name in tables:
        tables[name]["cluster"] = tables[name]["cluster"].map(ids)
    trial = load_trial(write_trial(tmp_path, tables, raw))
    assert sorted(trial.clusters["cluster"]) == ["1", "2", "3", "4"]
    assert set(trial.patients["cluster"]) == {"1", "2", "3", "4"}


def test_parquet_round_trip(tmp_path):
    tables, raw = tiny_tables()
    a = load_trial(write_trial(tmp_path / "csv", tables, raw))
    b = load_trial(write_trial(tmp_path / "pq", tables, raw, fmt="parquet"))
    for name in ("patients", "cluster_periods"):
        pd.testing.assert_frame_equal(
            getattr(a, name).reset_index(drop=True),
            getattr(b, name).reset_index(drop=True),
            check_dtype=False,
        )
    pd.testing.assert_frame_equal(analysis_rows(a, "los"), analysis_rows(b, "los"))
    assert b.files["patients"]["path"].endswith(".parquet")


def test_files_hash_and_rows(trial):
    info = trial.files["patients"]
    assert info["rows"] == 60
    assert info["sha256"] == sha256_file(info["path"])
    assert file_hashes(trial)["patients"] == info["sha256"]


# ------------------------------------------------------------------ dates
def test_bin_dates_week():
    d = pd.Series(["2024-01-01", "2024-01-07", "2024-01-08", "2024-02-01", "2023-12-31"])
    assert bin_dates(d, "week", "2024-01-01").tolist() == [1, 1, 2, 5, 0]


def test_bin_dates_month_with_mid_month_origin():
    d = pd.Series(["2024-01-15", "2024-02-14", "2024-02-15", "2024-04-15", "2024-12-31"])
    assert bin_dates(d, "month", "2024-01-15").tolist() == [1, 1, 2, 4, 12]


def test_bin_dates_quarter():
    d = pd.Series(["2024-01-01", "2024-03-31", "2024-04-01", "2025-01-01", "2025-06-30"])
    assert bin_dates(d, "quarter", "2024-01-01").tolist() == [1, 1, 2, 5, 6]


def test_bin_dates_default_origin_is_earliest():
    d = pd.Series(["2024-03-10", "2024-03-03", "2024-03-17"])
    assert bin_dates(d, "week").tolist() == [2, 1, 3]


def test_bin_dates_missing_and_bad():
    out = bin_dates(pd.Series(["2024-01-01", None, "nonsense"]), "month", "2024-01-01")
    assert out.iloc[0] == 1 and out.isna().tolist() == [False, True, True]


def test_trial_with_dates_and_date_starts(tmp_path):
    tables, raw = tiny_tables()
    for name in ("patients", "cluster_periods", "implementation"):
        df = tables[name]
        df["date"] = pd.to_datetime("2024-01-01") + pd.to_timedelta((df["period"] - 1) * 7 + 2, "D")
        tables[name] = df.drop(columns="period")
    put(tables["clusters"], "start_period", 0, "2024-01-08")  # week 2
    put(tables["clusters"], "start_period", 1, "2024-01-16")  # week 3
    raw["periods"] = {"date_column": "date", "unit": "week", "origin": "2024-01-01"}
    trial = load_trial(write_trial(tmp_path, tables, raw))
    assert trial.periods == [1, 2, 3, 4, 5]
    assert trial.clusters.set_index("cluster")["start_period"].tolist() == [2, 3, 4, 5]
    assert sorted(trial.cluster_periods["period"].unique()) == [1, 2, 3, 4, 5]
    cp = trial.cluster_periods.set_index(["cluster", "period"])
    assert cp.loc["A2", "treated"].tolist() == [0, 0, 1, 1, 1]


# ------------------------------------------------------------------ exclusions and rows
def test_exclusions_counted(tmp_path):
    tables, raw = tiny_tables()
    p = tables["patients"]
    put(p, "excess", [0, 1], np.nan)
    put(p, "age", [1, 2, 3], np.nan)  # row 1 already excluded for the outcome
    put(p, "comorbidity", [3, 4], np.nan)
    trial = load_trial(write_trial(tmp_path, tables, raw))
    ex = trial.exclusions["excess"]
    assert ex["read"] == 60 and ex["missing_outcome"] == 2
    assert ex["missing_covariate"] == 3 and ex["analysed"] == 55
    assert ex["missing_by_covariate"] == {"age": 2, "comorbidity": 2}
    assert trial.exclusions["los"]["missing_covariate"] == 4
    assert len(analysis_rows(trial, "excess")) == 55


def test_analysis_rows_columns(trial):
    rows = analysis_rows(trial, "excess")
    assert list(rows.columns) == [
        "cluster",
        "site",
        "period",
        "treated",
        "exposure_time",
        "fidelity",
        "age",
        "comorbidity",
        "y",
        "n",
    ]
    assert (rows["n"] == 1).all()
    assert (rows.loc[rows["treated"] == 0, "fidelity"] == 0).all()
    imp = trial.implementation.set_index(["cluster", "period"])["fidelity"]
    t = rows[rows["treated"] == 1].iloc[0]
    assert t["fidelity"] == imp[(t["cluster"], t["period"])]
    counts = analysis_rows(trial, "incidents")
    assert {"exposure", "n", "y"} <= set(counts.columns) and len(counts) == 20
    cp = trial.cluster_periods
    assert counts["exposure"].tolist() == cp["bed_days"].tolist()


def test_cell_gaussian_rows(tmp_path):
    tables, raw = tiny_tables()
    tables["patients"] = tables["patients"].drop(columns="score")
    cp = tables["cluster_periods"]
    cp["score_mean"] = np.arange(20) / 2
    cp["score_sd"] = 1.5
    put(cp, "score_mean", 0, np.nan)
    trial = load_trial(write_trial(tmp_path, tables, raw))
    rows = analysis_rows(trial, "score")
    assert len(rows) == 19 and "sd" in rows.columns
    assert trial.exclusions["score"]["missing_outcome"] == 1
    assert trial.locations["score"] == "cluster_periods"


def test_unknown_outcome(trial):
    from qialign.errors import QialignError

    with pytest.raises(QialignError, match="unknown outcome"):
        analysis_rows(trial, "nope")
