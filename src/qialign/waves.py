"""Survey waves: their labels (text) and the one order of waves.

A survey's ``wave`` is an integer (``1``, ``2``), a label (``baseline``, ``follow-up``, ``2024-Q1``) or a
date (``2024-01-31``); a survey without a wave column is one wave, labelled ``1``. Labels are text
everywhere (:func:`wave_label`: ``2`` and ``2.0`` are ``'2'``, a date is its ISO day), and the order
of waves is decided here only, by :func:`wave_order`:

- the config's ``alignment.waves`` (a list of labels, first to last) when it is given;
- else integers numerically, dates chronologically;
- else the natural order of :mod:`qialign.ids` (digit runs as numbers: ``2024-Q2`` before
  ``2024-Q10``), which for text labels such as ``baseline`` / ``follow-up`` is alphabetical; the
  config's ``alignment.waves`` fixes it (``pre`` / ``post`` would otherwise put ``post`` first).

Result files (``scores.csv``, ``alignment_draws.csv``; ``change.csv`` as ``wave_to_order``) record the
order in an integer ``wave_order`` column (1 = first wave); readers take it from there
(:func:`file_order`) and never re-sort labels. ``alignment.wave`` (the moderator's wave) picks a wave by
its label; unset, it is the first wave (:func:`resolve_wave`).

No qialign imports but :mod:`qialign.ids`: config, data, alignment and report all use it.
"""

from __future__ import annotations

import datetime as dt
import re
import warnings
from collections.abc import Iterable

import numpy as np
import pandas as pd

from qialign.ids import natural_key

ONE_WAVE = "1"  # the label of a survey without a wave column
WAVE_COLUMNS = ("wave", "wave_from", "wave_to")  # text columns of the result files
_INTEGER = re.compile(r"[+-]?\d+")


def wave_label(value) -> str | None:
    """A wave as text: integers (also 2.0) as digits, dates and midnight timestamps as their ISO day,
    other text stripped; missing values and empty text are None."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    if isinstance(value, (bool, np.bool_)):
        return str(value)
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return str(int(value)) if float(value).is_integer() else str(value)
    if isinstance(value, (dt.datetime, pd.Timestamp)):
        ts = pd.Timestamp(value)
        return ts.date().isoformat() if ts == ts.normalize() else ts.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    text = str(value).strip()
    return text or None


def wave_labels(values: pd.Series) -> pd.Series:
    """A wave column as text labels (:func:`wave_label`), missing values NaN, same index."""
    labels = [wave_label(v) for v in values]
    return pd.Series([np.nan if v is None else v for v in labels], index=values.index, dtype="object")


def _dates(labels: list[str]) -> list[pd.Timestamp] | None:
    """The labels as dates when every one of them parses as a date, else None."""
    with warnings.catch_warnings():  # pandas warns on labels such as 2024-Q1 (parsed as quarters)
        warnings.simplefilter("ignore")
        parsed = pd.to_datetime(pd.Series(labels, dtype="object"), errors="coerce", format="mixed")
    return None if parsed.isna().any() else list(parsed)


def wave_order(values: Iterable, listed: Iterable | None = None) -> list[str]:
    """The distinct waves of ``values`` (missing dropped) as text labels, first to last.

    ``listed`` (``alignment.waves``) gives the order when not None; a wave it does not list is a
    ValueError (the survey's validation reports it first, naming file, column and rows). Otherwise
    integers sort numerically, dates chronologically, anything else in natural order (alphabetical for
    text labels).
    """
    labels = {w for w in (wave_label(v) for v in values) if w is not None}
    if listed is not None:
        order = [wave_label(w) for w in listed]
        unknown = sorted(labels - set(order), key=natural_key)
        if unknown:
            raise ValueError(
                f"wave(s) {', '.join(unknown)} not listed in alignment.waves ({', '.join(order)})"
            )
        return [w for w in dict.fromkeys(order) if w in labels]
    labels = sorted(labels, key=natural_key)  # a total order first; the sorts below are stable
    basis = natural_basis(labels)
    if basis == "integers":
        return sorted(labels, key=int)
    if basis == "dates":
        rank = dict(zip(labels, _dates(labels), strict=True))
        return sorted(labels, key=rank.__getitem__)
    return labels


def natural_basis(labels: Iterable[str]) -> str:
    """How :func:`wave_order` orders ``labels`` without ``alignment.waves``: 'integers', 'dates' or
    'labels' (natural order: alphabetical for text such as baseline / follow-up)."""
    labels = list(labels)
    if all(_INTEGER.fullmatch(w) for w in labels):
        return "integers"
    return "dates" if _dates(labels) is not None else "labels"


def order_codes(labels: list[str]) -> dict[str, int]:
    """Label -> ``wave_order`` (1 = first) for waves already in order."""
    return {w: k for k, w in enumerate(labels, start=1)}


def file_order(table: pd.DataFrame, column: str = "wave", order_column: str = "wave_order") -> list[str]:
    """The waves of a result file in the order it records (its ``wave_order`` column; without one, the
    order in which the rows were written)."""
    if table.empty or column not in table:
        return []
    rows = table.dropna(subset=[column])
    if order_column in rows:
        rows = rows.sort_values(order_column, kind="stable")
    return [wave_label(w) for w in dict.fromkeys(rows[column])]


def resolve_wave(configured, order: list[str]) -> str:
    """The moderator's wave: ``alignment.wave`` as a label, or the first wave of ``order`` when unset.
    A label not in ``order`` (or no waves at all) is a ValueError naming the waves there are."""
    label = wave_label(configured)
    if label is None:
        if not order:
            raise ValueError("no survey waves")
        return order[0]
    if label not in order:
        raise ValueError(f"no wave '{label}' (alignment.wave); waves: {', '.join(order) or 'none'}")
    return label
