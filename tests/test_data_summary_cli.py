"""summarise() text and ``qialign validate`` (exit 0 on good data; exit 2, no traceback, on bad)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from qialign.data import design_diagram, load_trial, summarise
from test_data_helpers import put, tiny_tables, validate_concurrently, write_trial


def test_summary_text(tmp_path):
    tables, raw = tiny_tables()
    put(tables["patients"], "excess", 0, np.nan)
    trial = load_trial(write_trial(tmp_path, tables, raw))
    text = summarise(trial)
    assert "Trial tiny: Tiny synthetic trial" in text
    assert "SYNTHETIC" in text
    assert "Design: stepped_wedge" in text
    assert "Clusters: 4 in 2 site(s) (S1: 2, S2: 2)" in text
    assert "Periods: 1..5 (5)" in text
    assert "per cluster-period min 3, median 3, max 3" in text
    assert "excess: bernoulli in patients; read 60, missing outcome 1" in text
    assert "incidents: negative_binomial in cluster_periods" in text
    assert "Survey: 12 respondents" in text and "doctor" in text


def test_design_diagram(tmp_path):
    tables, raw = tiny_tables()
    for name in ("patients",):
        df = tables[name]
        tables[name] = df[~((df["cluster"] == "B2") & (df["period"] == 2))]
    tables["cluster_periods"] = tables["cluster_periods"][
        ~((tables["cluster_periods"]["cluster"] == "B2") & (tables["cluster_periods"]["period"] == 2))
    ]
    trial = load_trial(write_trial(tmp_path, tables, raw))
    lines = design_diagram(trial).splitlines()
    assert lines[0].endswith("period 12345")
    assert lines[1] == "S1"
    assert lines[2].split() == ["A1", ".####"]
    assert lines[3].split() == ["A2", "..###"]
    assert lines[4] == "S2"
    assert lines[6].split() == ["B2", ".-..#"]
    assert "legend" in lines[-1] and "'#' intervention" in lines[-1]


def _ok(d: Path) -> dict:
    tables, raw = tiny_tables()
    return write_trial(d, tables, raw)


def _bad(d: Path) -> dict:
    tables, raw = tiny_tables()
    put(tables["patients"], "excess", [2, 4], 2)
    put(tables["cluster_periods"], "cluster", 0, "ZZ")
    put(tables["survey"], "role", 1, "porter")
    put(tables["clusters"], "start_period", 3, np.nan)
    return write_trial(d, tables, raw)


def _missing(d: Path) -> dict:
    cfg = _ok(d)
    cfg["data"]["patients"] = str(d / "absent.csv")
    return cfg


@pytest.fixture(scope="module")
def cli_runs(tmp_path_factory):
    """Run the three CLI cases concurrently (each subprocess pays the import cost)."""
    return validate_concurrently(tmp_path_factory, {"ok": _ok, "bad": _bad, "missing": _missing})


def test_cli_validate_ok(cli_runs):
    _, code, stdout, stderr = cli_runs["ok"]
    assert code == 0, stderr
    assert "Design diagram" in stdout and "A1" in stdout


def test_cli_validate_bad_data_exit_2_no_traceback(cli_runs):
    cfg, code, stdout, stderr = cli_runs["bad"]
    assert code == 2
    err = stdout + stderr
    assert "Traceback" not in err
    assert f"{cfg['data']['patients']}, column 'excess'" in err
    assert "2 row(s): 3, 5" in err
    assert f"{cfg['data']['cluster_periods']}, column 'cluster'" in err
    assert f"{cfg['data']['survey']}, column 'role'" in err
    assert f"{cfg['data']['clusters']}, column 'start_period'" in err and "B2" in err


def test_cli_validate_missing_file_exit_2(cli_runs):
    _, code, stdout, stderr = cli_runs["missing"]
    assert code == 2
    assert "Traceback" not in stdout + stderr
    assert "absent.csv: patients table not found" in stderr
