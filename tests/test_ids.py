"""Ids are text end to end: the one reader of intermediate files (``read_results_csv``) and the natural
sort of ids."""

from __future__ import annotations

import pandas as pd

from qialign.data.io import ID_COLUMNS, natural_codes, read_results_csv, read_results_parquet, sort_ids


# ---------------------------------------------------------------- fast: the reader and the sort
def test_results_csv_keeps_integer_looking_ids_as_text(tmp_path):
    path = tmp_path / "scores.csv"
    path.write_text("cluster,site,wave,alignment\n007,1,1,0.5\n10,2,1,0.7\n3,,1,0.9\n")
    scores = read_results_csv(path)
    assert scores["cluster"].tolist() == ["007", "10", "3"]
    assert pd.api.types.is_string_dtype(scores["cluster"])
    assert scores["site"].tolist()[:2] == ["1", "2"] and pd.isna(scores["site"].iloc[2])
    assert scores["wave"].tolist() == [1, 1, 1]  # waves and values keep their numeric type
    assert scores["alignment"].dtype == float


def test_results_parquet_ids_become_text(tmp_path):
    path = tmp_path / "cells.parquet"
    pd.DataFrame({"cluster": [7, 10], "period": [1, 2], "n": [3, 4]}).to_parquet(path)
    cells = read_results_parquet(path)
    assert cells["cluster"].tolist() == ["7", "10"]
    assert cells["period"].tolist() == [1, 2]


def test_id_columns_are_defined_once():
    from qialign.data import prepare

    assert prepare.ID_COLUMNS is ID_COLUMNS
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
