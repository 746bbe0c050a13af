"""Hand-written fit outputs in the tests have their producer's columns (producer_columns.py)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from producer_columns import producer_columns, write_fit_file
from qialign.results import FIT_FILES

TESTS = Path(__file__).resolve().parent
TABLES = [name for name in FIT_FILES.values() if name.endswith(".csv")]


def test_a_renamed_column_in_a_hand_written_fit_file_fails(tmp_path):
    """The check is exact: the producer's columns pass, one renamed column (the LOO-style mistake
    issue 12 found) does not."""
    columns = producer_columns("bernoulli")[FIT_FILES["ppc"]]
    good = pd.DataFrame([range(len(columns))], columns=columns)
    write_fit_file(good, tmp_path / FIT_FILES["ppc"])
    assert pd.read_csv(tmp_path / FIT_FILES["ppc"]).columns.tolist() == columns
    with pytest.raises(AssertionError, match="its producer writes"):
        write_fit_file(good.rename(columns={"inside": "covered"}), tmp_path / FIT_FILES["ppc"])


def test_every_fit_table_has_a_producer_column_list():
    """Every csv in FIT_FILES is made by fit_tables (a new fit output gets its columns checked too)."""
    assert sorted(producer_columns("bernoulli")) == sorted(TABLES)


def _names_in(text: str) -> set[str]:
    """The fit tables a line of source names, literally or as ``FIT_FILES["key"]``."""
    keys = {n for k, n in FIT_FILES.items() if f'FIT_FILES["{k}"]' in text}
    return keys | {n for n in TABLES if n in text}


def test_no_test_writes_a_fit_table_by_hand_around_the_check():
    """A test that writes a fit output with ``to_csv`` bypasses the check, unless it rewrites a table
    the real step wrote (the same file read with ``read_csv`` in that test module)."""
    offenders = []
    for path in sorted(TESTS.glob("test_*.py")):
        lines = path.read_text().splitlines()
        read = set().union(*(_names_in(line) for line in lines if "read_csv(" in line))
        for number, line in enumerate(lines, 1):
            if ".to_csv(" in line:  # the call's arguments may start on the next line
                target = line + (lines[number] if line.rstrip().endswith("(") else "")
                offenders += [f"{path.name}:{number} {n}" for n in _names_in(target) - read]
    assert not offenders, offenders
