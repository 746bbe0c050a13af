"""A treatment column in the user's data, checked against the schedule in clusters.start_period.

qialign derives ``treated`` from the clusters table: 1 from a cluster's ``start_period`` on, 0
before it and 0 throughout in a cluster that never starts (empty start_period). A patients or
cluster_periods table may carry its own 0/1 indicator under the contract name ``treated`` (rename
yours with ``columns``, e.g. ``{treated: on_intervention}``, globally or per table). Its values are
checked (0 or 1, by the table schemas) and here compared row by row with the schedule: a row whose
0/1 differs is a validation error naming the file, the column, the rows and what the start period
implies; a cluster whose indicator switches off (1, then 0 in a later period) is said to do so,
because the designs qialign fits assume the intervention stays in place once started.

Rows with a missing indicator, an unknown cluster or a missing period are not compared (the table
schemas report the last two). After the check the column is replaced by the derived one.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from qialign.data.tables import num
from qialign.errors import Problem
from qialign.ids import sort_ids

MAX_PERIODS = 10


def treatment_problems(tables: dict, paths: dict, display: dict) -> list[Problem]:
    """Problems of the ``treated`` columns of patients and cluster_periods (coerced tables)."""
    clusters = tables["clusters"]
    if not {"cluster", "start_period"} <= set(clusters.columns):
        return []
    starts = clusters.dropna(subset=["cluster"]).drop_duplicates("cluster").set_index("cluster")
    starts = starts["start_period"].astype("float64")
    start_name = display["clusters"].get("start_period", "start_period")
    problems = []
    for name in ("patients", "cluster_periods"):
        df = tables.get(name)
        if df is None or not {"cluster", "period", "treated"} <= set(df.columns):
            continue
        column = display[name].get("treated", "treated")
        problems += _table_problems(df, starts, paths[name], column, start_name)
    return problems


def _table_problems(
    df: pd.DataFrame, starts: pd.Series, file: str, column: str, start_name: str
) -> list[Problem]:
    given = num(df["treated"])
    period = df["period"].astype("float64")
    compared = given.isin([0, 1]) & period.notna() & df["cluster"].isin(starts.index)
    rows = pd.DataFrame({"cluster": df["cluster"], "period": period, "given": given}, index=df.index)[
        compared
    ]
    start = rows["cluster"].map(starts)
    rows["expected"] = (start.notna() & (rows["period"] >= start.fillna(np.inf))).astype("float64")
    wrong = rows[rows["given"] != rows["expected"]]
    problems = []
    for cluster in sort_ids(wrong["cluster"]):
        mine = rows[rows["cluster"] == cluster]
        bad = wrong[wrong["cluster"] == cluster]
        expected = _expected(cluster, starts[cluster], start_name, mine, bad)
        found = sorted(int(r) for r in bad.index)
        problems.append(Problem(file, column, expected, rows=found, count=len(found)))
    return problems


def _expected(cluster: str, start: float, start_name: str, mine: pd.DataFrame, bad: pd.DataFrame) -> str:
    """What the start period implies for one cluster, what its rows say, and whether it switches off."""
    if np.isnan(start):
        schedule = f"0 in every period (cluster {cluster} never starts: its {start_name} is empty)"
    else:
        schedule = f"1 from period {int(start)} ({start_name} of cluster {cluster}) and 0 before it"
    found = [
        f"{int(value)} in period(s) {_periods(bad.loc[bad['given'] == value, 'period'])}"
        for value in (0.0, 1.0)
        if (bad["given"] == value).any()
    ]
    text = f"expected {schedule}; found {' and '.join(found)}"
    on = mine.loc[mine["given"] == 1, "period"]
    if len(on):
        first_on = on.min()
        off = mine.loc[(mine["given"] == 0) & (mine["period"] > first_on), "period"]
        if len(off):
            text += (
                f"; the treatment switches off (1 in period {int(first_on)}, then 0 in period "
                f"{int(off.min())}): once started, the intervention must stay on"
            )
    return text


def _periods(values: pd.Series) -> str:
    periods = sorted({int(p) for p in values})
    more = ", ..." if len(periods) > MAX_PERIODS else ""
    return ", ".join(str(p) for p in periods[:MAX_PERIODS]) + more
