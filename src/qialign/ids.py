"""Identifiers: the one list of id columns and the one order of ids.

Ids are text everywhere (``qialign.data.io`` reads them so). Their order is natural: digit runs
compare as numbers, so 2 comes before 10 and zero padding ('02') does not change the order; clusters,
sites, cells, cluster-periods, respondents, GEE and MixedLM groups are all put in this order, so a
trial gives the same numbers whether its ids are written 7, 007 or ward_7 (each spelling used
throughout the trial), up to the labels.

No qialign imports here: models, frequentist and data all use it without import cycles.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import numpy as np
import pandas as pd

# contract names of the identifier columns of every table and intermediate file
ID_COLUMNS = ("cluster", "site", "respondent", "role", "id")


def natural_key(value) -> tuple:
    """Sort key of an id: digit runs compare as numbers ('ward_2' < 'ward_10', '01' ~ '1'), then the
    text itself breaks ties, so the order is total."""
    text = str(value)
    parts = re.split(r"(\d+)", text)
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in parts), text


def natural_order(values: Iterable) -> np.ndarray:
    """Positions that put ``values`` (ids, as text or not) in natural order; ties keep their order."""
    keys = [natural_key(v) for v in values]
    return np.array(sorted(range(len(keys)), key=keys.__getitem__), dtype=int)


def natural_factorize(values: Iterable) -> tuple[np.ndarray, list[str]]:
    """(codes, labels): ``labels`` the distinct ``values`` as text in natural order, ``codes`` 0..K-1
    their positions (as ``np.unique(values, return_inverse=True)``, but 2 before 10 and '02' where '2'
    would be). Grouping on the codes gives the same arithmetic however the ids are spelled."""
    text = [str(v) for v in values]
    labels = sorted(set(text), key=natural_key)
    rank = {v: k for k, v in enumerate(labels)}
    return np.array([rank[v] for v in text], dtype=int), labels


def natural_codes(values: Iterable) -> np.ndarray:
    """The codes of :func:`natural_factorize`."""
    return natural_factorize(values)[0]


def sort_ids(values: Iterable) -> list[str]:
    """Distinct ids (missing dropped) as text in natural order: the one cluster order everywhere."""
    ids = {str(v) for v in values if not pd.isna(v)}
    return sorted(ids, key=natural_key)


def ids_key(column: pd.Series) -> pd.Series:
    """``sort_values(key=ids_key)``: identifier columns in natural order, other columns as they are."""
    return column.map(natural_key) if column.name in ID_COLUMNS else column
