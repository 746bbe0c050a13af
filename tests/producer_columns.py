"""Hand-written fixture files, checked against their real producer: a test that writes a fit output
by hand writes it through :func:`write_fit_file`, which fails unless the table has exactly the
columns (names and order) the fit step writes for that file (``qialign.steps.fit.fit_tables`` on a
real small fit from ``estimand_fits``, made once per test process)."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import pandas as pd

from estimand_fits import cached_fit
from qialign.config.schema import schema_defaults
from qialign.results import FIT_FILES
from qialign.steps.fit import fit_tables


@cache
def producer_columns(family: str = "bernoulli") -> dict[str, list[str]]:
    """File name -> the columns the fit step writes for a ``family`` outcome (estimand_fits' fit of
    that family), at the default interval (eti, 95%)."""
    fit = cached_fit(family)
    cfg = {"interval": schema_defaults("interval")}
    ids = {"trial": "t", "outcome": "o", "model": "m", "seed": 1}
    tables, _ = fit_tables(fit, cfg, ids, "plugin")
    return {FIT_FILES[key]: list(table.columns) for key, table in tables.items()}


def write_fit_file(table: pd.DataFrame, path: Path, family: str = "bernoulli") -> None:
    """Write ``table`` to ``path`` (a ``FIT_FILES`` name) after checking its columns are the producer's."""
    expected = producer_columns(family)[path.name]
    assert list(table.columns) == expected, (
        f"hand-written {path.name}: columns {list(table.columns)}, its producer writes {expected}"
    )
    table.to_csv(path, index=False)
