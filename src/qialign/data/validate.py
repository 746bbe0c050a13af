"""Run the pandera schemas and the design checks; translate every failure into a Problem."""

from __future__ import annotations

import numpy as np
import pandas as pd
from pandera.errors import SchemaError, SchemaErrors

from qialign.data.tables import TableSchema
from qialign.errors import Problem

MAX_VALUES = 5


def _fmt(value) -> str:
    if isinstance(value, float) and np.isfinite(value) and value == int(value):
        return str(int(value))
    return repr(value) if isinstance(value, str) else str(value)


def _row_key(value):
    """Index values as plain Python scalars (numpy ints print as 'np.int64(3)')."""
    return value.item() if hasattr(value, "item") else value


def run_schema(schema: TableSchema, df: pd.DataFrame) -> list[Problem]:
    """Validate ``df`` lazily against ``schema``; one Problem per (column, rule) that fails."""
    try:
        schema.build().validate(df, lazy=True)
        return []
    except SchemaErrors as err:
        cases = err.failure_cases
    except SchemaError as err:  # pragma: no cover - lazy validation collects instead
        cases = err.failure_cases if err.failure_cases is not None else pd.DataFrame()
    except Exception as exc:  # pragma: no cover - a bug in a check must not become a traceback
        return [Problem(schema.file, None, f"could not be checked ({type(exc).__name__}: {exc})")]
    return translate(schema, cases)


def translate(schema: TableSchema, cases: pd.DataFrame) -> list[Problem]:
    """Group pandera failure cases into Problems naming file, column, rows and expectation."""
    problems: list[tuple[tuple, Problem]] = []
    cases = cases.astype({"check": "str"}).reset_index(drop=True)
    for check, group in cases.groupby("check", sort=False):
        rule = schema.rules.get(check)
        if check == "column_in_dataframe":
            present = ", ".join(str(schema.name(c)) for c in schema.columns_present) or "none"
            for col in group["failure_case"].unique():
                problems.append(
                    (
                        (0, 0),
                        Problem(
                            schema.file,
                            schema.name(col),
                            f"required column '{schema.name(col)}' is missing (columns present: {present})",
                        ),
                    )
                )
            continue
        if rule is None:  # pandera built-ins: not_nullable, dtype, ...
            for col, sub in group.groupby("column", sort=False, dropna=False):
                expected = "no missing values" if check == "not_nullable" else str(check)
                problems.append(((1, 0), _problem(schema, col, expected, sub, values=False)))
            continue
        sub = group
        if rule.column is not None and (group["column"] == rule.column).any():
            sub = group[group["column"] == rule.column]
        order = int(str(check).rsplit("#", 1)[-1])
        problems.append(((2, order), _problem(schema, rule.column, rule.expected, sub, rule.values)))
    problems.sort(key=lambda item: item[0])
    return [p for _, p in problems]


def _problem(schema: TableSchema, col, expected: str, sub: pd.DataFrame, values: bool) -> Problem:
    index = sub["index"].dropna()
    rows = [_row_key(r) for r in dict.fromkeys(index.tolist())]
    try:
        rows = sorted(rows)
    except TypeError:
        pass
    if values and len(rows):
        found = list(dict.fromkeys(_fmt(v) for v in sub["failure_case"] if not _isna(v)))
        if found:
            more = ", ..." if len(found) > MAX_VALUES else ""
            expected = f"{expected}; found {', '.join(found[:MAX_VALUES])}{more}"
    column = schema.name(col) if isinstance(col, str) else None
    return Problem(schema.file, column, "expected " + expected, rows=rows, count=len(rows))


def _isna(value) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


# ---------------------------------------------------------------- design sanity (pandera on summaries)
def cluster_summary(clusters: pd.DataFrame, cells: pd.DataFrame) -> pd.DataFrame:
    """One row per cluster id: start, cells with data, control (pre) and treated (post) cells."""
    start = clusters.drop_duplicates("cluster").set_index("cluster")["start_period"]
    c = cells.merge(start.rename("start").reset_index(), on="cluster", how="left")
    treated = c["start"].notna() & (c["period"] >= c["start"])
    c = c.assign(pre=~treated, post=treated)
    agg = c.groupby("cluster", observed=True).agg(
        cells=("period", "size"), pre=("pre", "sum"), post=("post", "sum")
    )
    out = pd.DataFrame({"start": start}).join(agg, how="left")
    out[["cells", "pre", "post"]] = out[["cells", "pre", "post"]].fillna(0).astype("int64")
    out.index.name = "cluster"
    return out


def _starts(d: pd.DataFrame) -> pd.Series:
    return d["start"].dropna()


def _has_data(d: pd.DataFrame) -> pd.Series:
    return d["cells"] > 0


#: per design, what the per-cluster summary must show (checked on ``start``, no values listed):
#: (expected ... ; what was found, rule)
DESIGN_RULES = {
    "stepped_wedge": [
        (
            "every cluster to start the intervention in a stepped wedge; these never start",
            lambda d: d["start"].notna(),
        ),
        (
            "control periods (data before the start) for every cluster in a stepped wedge",
            lambda d: ~_has_data(d) | d["start"].isna() | (d["pre"] > 0),
        ),
        (
            "staggered starts in a stepped wedge (clusters starting at two or more periods); "
            "all clusters start together",
            lambda d: _starts(d).nunique() != 1,
        ),
    ],
    "controlled_before_after": [
        (
            "some clusters that never start (controls, empty start_period) in a controlled "
            "before-after design; all clusters start",
            lambda d: bool(d["start"].isna().any()) or d.empty,
        ),
        (
            "some clusters that start in a controlled before-after design; none starts",
            lambda d: bool(d["start"].notna().any()) or d.empty,
        ),
    ],
    "interrupted_time_series": [
        (
            "every series to start in an interrupted time series (no concurrent controls); these never start",
            lambda d: d["start"].notna(),
        ),
        (
            "one common start period in an interrupted time series (no concurrent controls); "
            "the starts differ",
            lambda d: _starts(d).nunique() <= 1,
        ),
        (
            "data before and after the start for every series in an interrupted time series",
            lambda d: ~_has_data(d) | d["start"].isna() | ((d["pre"] > 0) & (d["post"] > 0)),
        ),
    ],
}


def _schedule_rules(s: TableSchema, data_files: str) -> None:
    """Rules of every design: starts within the data, some treated and some control cells."""
    s.frame_rule(
        "start",
        f"a start_period within the periods that have data in {data_files} (leave it empty for a "
        "control); these clusters start after their last period with data",
        lambda d: d["start"].isna() | (d["post"] > 0) | (d["cells"] == 0),
        values=True,
    )
    s.frame_rule(
        "start",
        f"some treated cells (cluster-periods at or after start_period) in {data_files}; there are none",
        lambda d: bool(d["post"].sum() > 0) or not bool(d["cells"].sum()),
        values=False,
    )
    s.frame_rule(
        "start",
        f"some control cells (cluster-periods before start_period or never started) in "
        f"{data_files}; there are none",
        lambda d: bool(d["pre"].sum() > 0) or not bool(d["cells"].sum()),
        values=False,
    )


def design_schema(cfg: dict, file: str, data_files: str, display: dict) -> TableSchema:
    """Rules on the per-cluster summary: data present, starts and control cells fit ``design``
    (``DESIGN_RULES``, then the rules of every design)."""
    s = TableSchema("design", file, ["start", "cells", "pre", "post"], dict(display))
    s.display.update({"start": display.get("start_period", "start_period")})
    s.display["cells"] = display.get("cluster", "cluster")
    s.column(
        "cells",
        [(f"data for every cluster in {data_files}; these clusters have none", lambda x: x > 0)],
    )
    for expected, rule in DESIGN_RULES.get(cfg["design"], []):
        s.frame_rule("start", expected, rule, values=False)
    _schedule_rules(s, data_files)
    return s


def period_schema(file: str, display: dict, lo: int, hi: int) -> TableSchema:
    """Rule on the per-period summary: every period in lo..hi has data."""
    s = TableSchema("periods", file, ["rows"], dict(display))
    s.display["rows"] = display.get("period", "period")
    s.column(
        "rows", [(f"data in every period of the range {lo}..{hi}; these periods have none", lambda x: x > 0)]
    )
    return s


def design_problems(
    cfg: dict,
    clusters: pd.DataFrame,
    cells: pd.DataFrame,
    files: dict,
    display: dict,
    data_display: dict | None = None,
) -> list[Problem]:
    """Design sanity and coverage: clusters without data, periods without data, design vs starts.

    ``clusters`` has cluster (str) and start_period (Int64); ``cells`` has cluster and period
    (int) of every cluster-period with data in the outcome tables. ``display`` names the clusters
    table's columns as the user wrote them, ``data_display`` (default ``display``) the outcome tables'.
    """
    data_files = " and ".join(files[t] for t in ("patients", "cluster_periods") if t in files)
    summary = cluster_summary(clusters, cells)
    problems = run_schema(design_schema(cfg, files["clusters"], data_files, display), summary)
    if len(cells):
        lo, hi = int(cells["period"].min()), int(cells["period"].max())
        per = cells.groupby("period").size().reindex(range(lo, hi + 1), fill_value=0)
        per = pd.DataFrame({"rows": per})
        per.index.name = "period"
        names = display if data_display is None else data_display
        problems += run_schema(period_schema(data_files, names, lo, hi), per)
    return problems
