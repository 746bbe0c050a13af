"""Read contract tables (CSV or Parquet) and the workflow's intermediate files, and hash files.

Identifiers are text from the moment they are read, whatever the user's files use: integer ids
(``7``), zero-padded ones (``007``) and names (``ward_7``) stay exactly as written. ``read_table``
(user tables) and ``read_results_csv`` / ``read_results_parquet`` (every file under results/) apply
:data:`qialign.ids.ID_COLUMNS`; :mod:`qialign.ids` also holds the one order of ids. Every failure
reading a user table is a QialignError naming the file.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from qialign.errors import QialignError
from qialign.ids import ID_COLUMNS
from qialign.waves import WAVE_COLUMNS

CSV_SUFFIXES = (".csv", ".csv.gz", ".tsv")
PARQUET_SUFFIXES = (".parquet", ".pq")


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _suffix(path: Path) -> str:
    name = path.name.lower()
    for suf in CSV_SUFFIXES + PARQUET_SUFFIXES:
        if name.endswith(suf):
            return suf
    return path.suffix.lower()


def _ids_to_str(values: pd.Series) -> pd.Series:
    """Identifier column as pandas ``str`` (integral floats such as 3.0 become '3'; missing stays NaN)."""
    if pd.api.types.is_float_dtype(values):
        finite = values.dropna()
        if len(finite) and np.all(np.mod(finite, 1) == 0):
            values = values.astype("Int64")
    if pd.api.types.is_bool_dtype(values) or pd.api.types.is_numeric_dtype(values):
        out = values.astype("str")
        return out.where(values.notna(), np.nan).astype("str")
    out = values.astype("str")
    return out.str.strip().replace("", np.nan).astype("str")


def read_table(path: str | Path, name: str, id_columns: tuple[str, ...] = ()) -> pd.DataFrame:
    """Read one table; ``id_columns`` (user names) are read as strings.

    The index is the 1-based data-row number, so validation messages can cite rows as a user sees
    them in a spreadsheet (header excluded).
    """
    path = Path(path)
    if not path.exists():
        raise QialignError(f"{path}: {name} table not found.")
    if not path.is_file():
        raise QialignError(f"{path}: {name} table is not a file.")
    suffix = _suffix(path)
    try:
        if suffix in CSV_SUFFIXES:
            sep = "\t" if suffix == ".tsv" else ","
            header = pd.read_csv(path, sep=sep, nrows=0).columns
            dtype = {c: "str" for c in id_columns if c in header}
            df = pd.read_csv(path, sep=sep, dtype=dtype, skipinitialspace=True)
        elif suffix in PARQUET_SUFFIXES:
            df = pd.read_parquet(path)
        else:
            raise QialignError(
                f"{path}: {name} table has extension '{suffix or '(none)'}'; "
                "expected .csv, .csv.gz, .tsv, .parquet or .pq."
            )
    except QialignError:
        raise
    except pd.errors.EmptyDataError:
        raise QialignError(f"{path}: {name} table is empty (no header row).") from None
    except Exception as exc:  # pandas/pyarrow raise many types for unreadable files
        raise QialignError(f"{path}: cannot read {name} table: {type(exc).__name__}: {exc}") from None
    df.columns = [str(c).strip() for c in df.columns]
    dupes = sorted({c for c in df.columns if list(df.columns).count(c) > 1})
    if dupes:
        raise QialignError(f"{path}: {name} table has duplicated column name(s): {', '.join(dupes)}.")
    ids_to_text(df, id_columns)
    df.index = pd.RangeIndex(1, len(df) + 1)
    return df


def ids_to_text(df: pd.DataFrame, columns: Iterable[str] = ID_COLUMNS) -> pd.DataFrame:
    """``df`` with its identifier columns (those of ``columns`` it has) as text, in place."""
    for col in columns:
        if col in df.columns:
            df[col] = _ids_to_str(df[col])
    return df


def read_results_csv(path: str | Path) -> pd.DataFrame:
    """An intermediate CSV (scores, draws, estimates, cluster effects, ...) with text ids and text
    wave labels (their order is the file's ``wave_order`` column, :mod:`qialign.waves`)."""
    header = pd.read_csv(path, nrows=0).columns
    return pd.read_csv(path, dtype={c: "str" for c in ID_COLUMNS + WAVE_COLUMNS if c in header})


def read_results_parquet(path: str | Path) -> pd.DataFrame:
    """An intermediate Parquet file (analysis rows, cells) with text ids."""
    return ids_to_text(pd.read_parquet(path))
