"""Ids are text end to end: integer cluster ids (the geeCRT sample trial) and the same trial with the ids
zero-padded ("01".."12") run through the whole workflow and give the same alignment scores and estimates.

The fast tests check the one reader of intermediate files (``read_results_csv``) and the natural sort.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from qialign.data.io import read_results_csv, read_results_parquet
from qialign.ids import ID_COLUMNS, natural_codes, sort_ids
from tiny_project import copy_project

ROOT = Path(__file__).resolve().parents[1]
GEECRT = ROOT / "tests" / "data" / "geecrt" / "sampleSWCRTSmall.csv"


# ---------------------------------------------------------------- fast: the reader and the sort
def test_results_csv_keeps_integer_looking_ids_as_text(tmp_path):
    path = tmp_path / "scores.csv"
    path.write_text("cluster,site,wave,alignment\n007,1,1,0.5\n10,2,1,0.7\n3,,1,0.9\n")
    scores = read_results_csv(path)
    assert scores["cluster"].tolist() == ["007", "10", "3"]
    assert pd.api.types.is_string_dtype(scores["cluster"])
    assert scores["site"].tolist()[:2] == ["1", "2"] and pd.isna(scores["site"].iloc[2])
    assert scores["wave"].tolist() == ["1", "1", "1"]  # waves are labels (qialign.waves); values numbers
    assert scores["alignment"].dtype == float


def test_results_parquet_ids_become_text(tmp_path):
    path = tmp_path / "cells.parquet"
    pd.DataFrame({"cluster": [7, 10], "period": [1, 2], "n": [3, 4]}).to_parquet(path)
    cells = read_results_parquet(path)
    assert cells["cluster"].tolist() == ["7", "10"]
    assert cells["period"].tolist() == [1, 2]


def test_moderator_alignment_matches_padded_ids_and_names_the_file_when_none_match(tmp_path):
    from qialign.errors import QialignError
    from qialign.steps.alignment import moderator_alignment

    path = tmp_path / "scores.csv"
    path.write_text("cluster,wave,alignment\n007,1,0.6\n010,1,0.9\n011,1,0.7\n")
    raw, notes, _ = moderator_alignment(path, 1, ["007", "010", "011"])
    assert raw.index.tolist() == ["007", "010", "011"] and raw.tolist() == [0.6, 0.9, 0.7] and not notes
    with pytest.raises(QialignError, match=r"scores.csv: no alignment score in wave 1 for any analysed"):
        moderator_alignment(path, 1, ["7", "10", "11"])
    path.write_text("cluster,wave,alignment\n1,1,0.5\n2,1,0.5\n")
    with pytest.raises(QialignError, match="scores.csv: wave 1: alignment does not vary"):
        moderator_alignment(path, 1, ["1", "2"])


def test_id_columns_are_defined_once():
    from qialign.data import renames  # the user's names of the id columns read as text

    assert renames.ID_COLUMNS is ID_COLUMNS
    assert {"cluster", "site", "respondent", "role", "id"} <= set(ID_COLUMNS)


def test_ids_sort_naturally_and_padding_does_not_change_the_order():
    assert sort_ids(["10", "2", "1", "ward_10", "ward_9"]) == ["1", "2", "10", "ward_9", "ward_10"]
    plain = [str(i) for i in range(1, 13)]
    padded = [f"{i:02d}" for i in range(1, 13)]
    assert sort_ids(plain[::-1]) == plain
    assert sort_ids(padded[::-1]) == padded
    assert sort_ids(["1", "01", "001"]) == ["001", "01", "1"]  # equal numbers: a fixed, total order
    # codes for grouping (GEE clusters): the same for integer and zero-padded ids
    assert (
        natural_codes([10, 2, 1, 2]).tolist()
        == natural_codes(["10", "02", "01", "02"]).tolist()
        == [2, 1, 0, 1]
    )


# ---------------------------------------------------------------- the whole workflow
def _survey(rng: np.random.Generator, clusters: list[int]) -> pd.DataFrame:
    """Staff survey: per cluster 4 clinicians (doctor, nurse) and 3 managers; the managers' view
    drifts from the clinicians' by a cluster-specific amount, so alignment varies over clusters."""
    rows = []
    for j in clusters:
        drift = rng.uniform(0, 1.5)
        for role in ["doctor", "nurse", "doctor", "nurse", "matron", "matron", "manager"]:
            centre = 3.5 + (drift if role in ("matron", "manager") else 0.0) * np.array([1, 1, -1, -1])
            items = np.clip(np.rint(centre + rng.normal(0, 0.7, 4)), 1, 5).astype(int)
            rows.append({"cluster": j, "role": role, **{f"q{i + 1}": v for i, v in enumerate(items)}})
    survey = pd.DataFrame(rows)
    survey.insert(0, "respondent", np.arange(1, len(survey) + 1))
    return survey


def _trial_tables() -> dict[str, pd.DataFrame]:
    """geeCRT's small trial (id = cluster, integers 1..12; y_bin, y_con) as patients, clusters, survey."""
    d = pd.read_csv(GEECRT)
    patients = d[["id", "period", "y_bin", "y_con"]].rename(columns={"id": "cluster"})
    treated = d[d["treatment"] == 1]
    starts = treated.groupby("id")["period"].min()
    clusters = pd.DataFrame({"cluster": sorted(d["id"].unique())})
    clusters["start_period"] = clusters["cluster"].map(starts).astype("Int64")
    return {
        "clusters": clusters,
        "patients": patients,
        "survey": _survey(np.random.default_rng(12), clusters["cluster"].tolist()),
    }


def _write_trial(work: Path, trial: str, tables: dict[str, pd.DataFrame], pad: bool) -> None:
    data = work / "data" / trial
    data.mkdir(parents=True)
    paths = {}
    for name, df in tables.items():
        df = df.copy()
        if pad:  # the same trial with text ids: "01".."12", respondents "0001"..
            df["cluster"] = df["cluster"].map(lambda c: f"{c:02d}")
            if "respondent" in df:
                df["respondent"] = df["respondent"].map(lambda r: f"{r:04d}")
        paths[name] = str(data / f"{name}.csv")
        df.to_csv(paths[name], index=False)
    cfg = {
        "id": trial,
        "title": f"geeCRT small sample ({'zero-padded' if pad else 'integer'} cluster ids)",
        "design": "stepped_wedge",
        "data": paths,
        "outcomes": {
            "y_bin": {"family": "bernoulli", "better": "lower"},
            "y_con": {"family": "gaussian", "better": "higher"},
        },
        "alignment": {
            "source": "survey",
            "roles": {"clinical": ["doctor", "nurse"], "managerial": ["matron", "manager"]},
            "domains": {"safety": ["q1", "q2"], "flow": ["q3", "q4"]},
        },
        "models": [{"id": "hh"}],
        "sampler": {"chains": 2, "draws": 100, "tune": 100},
        "diagnostics": {"retry": False},
        "robustness": {"enabled": False},  # the battery has its own tests (test_robustness*.py)
        "seed": 20261201,
    }
    (work / "config" / "trials" / f"{trial}.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))


@pytest.fixture(scope="module")
def ids_project(tmp_path_factory, snakemake) -> dict:
    work = tmp_path_factory.mktemp("ids_project")
    copy_project(work)
    (work / "config" / "trials").mkdir(parents=True)
    tables = _trial_tables()
    _write_trial(work, "geecrt_int", tables, pad=False)
    _write_trial(work, "geecrt_text", tables, pad=True)
    (work / "config" / "config.yaml").write_text("trials: [geecrt_int, geecrt_text]\n")
    return {"work": work, "run": snakemake(work)}


def _read(work: Path, trial: str, *parts: str) -> pd.DataFrame:
    return pd.read_csv(work / "results" / trial / Path(*parts), dtype={"cluster": str})


@pytest.mark.workflow
def test_integer_and_text_cluster_ids_run_the_whole_workflow(ids_project):
    run = ids_project["run"]
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-5000:]
    for trial in ("geecrt_int", "geecrt_text"):
        assert (ids_project["work"] / "reports" / trial / "report.html").is_file()


@pytest.mark.workflow
def test_integer_and_text_ids_give_the_same_scores(ids_project):
    work = ids_project["work"]
    ints = _read(work, "geecrt_int", "alignment", "scores.csv")
    text = _read(work, "geecrt_text", "alignment", "scores.csv")
    assert ints["cluster"].tolist() == [str(i) for i in range(1, 13)]
    assert text["cluster"].tolist() == [f"{i:02d}" for i in range(1, 13)]  # zero padding preserved
    values = [c for c in ints.columns if c != "cluster"]
    pd.testing.assert_frame_equal(ints[values], text[values], check_exact=True)
    assert ints["alignment"].std() > 0.02  # the scores vary: alignment can moderate the effect


@pytest.mark.workflow
def test_integer_and_text_ids_give_the_same_estimates(ids_project):
    work = ids_project["work"]
    ints, text = _read(work, "geecrt_int", "estimates.csv"), _read(work, "geecrt_text", "estimates.csv")
    assert "alignment_interaction" in set(ints["estimand"])
    assert {"bayes", "gee_nested_exchangeable_md", "mixedlm"} <= set(ints["method"])
    assert set(ints["outcome"]) == {"y_bin", "y_con"}
    pd.testing.assert_frame_equal(ints.drop(columns="trial"), text.drop(columns="trial"), check_exact=True)
    fit = _read(work, "geecrt_int", "y_bin", "hh", "cluster_effects.csv")
    fit_text = _read(work, "geecrt_text", "y_bin", "hh", "cluster_effects.csv")
    assert fit_text["cluster"].tolist() == [f"{int(c):02d}" for c in fit["cluster"]]
    numeric = fit.select_dtypes("number").columns
    pd.testing.assert_frame_equal(fit[numeric], fit_text[numeric], check_exact=True)
    power, power_text = _read(work, "geecrt_int", "power.csv"), _read(work, "geecrt_text", "power.csv")
    assert len(power) > 0
    pd.testing.assert_frame_equal(
        power.drop(columns="trial", errors="ignore"),
        power_text.drop(columns="trial", errors="ignore"),
        check_exact=True,
    )
