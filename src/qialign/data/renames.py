"""Config ``columns:`` renames, global and per table, and the user's names they imply.

``columns`` maps contract names to the user's column names. A string value is a global rename,
applied to every table; a mapping under a table name (``clusters``, ``patients``,
``cluster_periods``, ``survey``, ``implementation``) holds that table's own renames, which override
the global ones for that table::

    columns: {cluster: ward, survey: {respondent: id}, patients: {cluster: unit}}

renames ``ward`` to ``cluster`` in clusters, cluster_periods, survey and implementation, ``unit`` to
``cluster`` in patients, and ``id`` to ``respondent`` in the survey only (the patients' ``id`` stays
the patient id). A per-table entry ``contract: contract`` cancels a global rename for that table.

``table_renames(columns, table)`` (contract name -> user's name) is also the table's *display*
mapping: validation messages about a table name its columns as the user wrote them.
"""

from __future__ import annotations

import pandas as pd

from qialign.errors import Problem
from qialign.ids import ID_COLUMNS

TABLES = ("clusters", "patients", "cluster_periods", "survey", "implementation")


def global_renames(columns: dict) -> dict[str, str]:
    """The renames that apply to every table (string values of ``columns``)."""
    return {contract: user for contract, user in columns.items() if isinstance(user, str)}


def table_renames(columns: dict, table: str) -> dict[str, str]:
    """Contract name -> user's name for one table: global renames, overridden by the table's own."""
    own = columns.get(table)
    return {**global_renames(columns), **(own if isinstance(own, dict) else {})}


def id_columns(columns: dict, table: str) -> tuple[str, ...]:
    """The user's names of the identifier columns of one table (read as text)."""
    names = table_renames(columns, table)
    return tuple(names.get(c, c) for c in ID_COLUMNS)


def rename(df: pd.DataFrame, renames: dict, file: str) -> tuple[pd.DataFrame, list[Problem]]:
    """Apply one table's contract <- user renames; a clash with an existing contract column is a problem."""
    mapping = {user: contract for contract, user in renames.items() if user in df.columns}
    problems = [
        Problem(
            file,
            contract,
            f"column '{user}' is renamed to '{contract}' (config columns) "
            f"but the file also has a column '{contract}'",
        )
        for user, contract in mapping.items()
        if contract in df.columns and contract != user
    ]
    if problems:
        return df, problems
    return df.rename(columns=mapping), []


def absent_renames(columns: dict, tables: dict[str, pd.DataFrame], paths: dict[str, str]) -> list[Problem]:
    """Renames whose user column is missing (a typo would otherwise be ignored).

    A global rename must find its column in one of the tables it applies to (those without their
    own entry for the contract name); a per-table rename in that table; a per-table map needs its
    table under ``data``.
    """
    problems = []
    for contract, user in global_renames(columns).items():
        applies = [t for t in tables if contract not in _own(columns, t)]
        if user == contract or not applies or any(user in tables[t].columns for t in applies):
            continue
        files = ", ".join(paths[t] for t in applies)
        problems.append(
            Problem("config", f"columns/{contract}", f"a column '{user}' in one of {files}; none has it")
        )
    for table in TABLES:
        own = _own(columns, table)
        if own and table not in tables:
            problems.append(
                Problem(
                    "config",
                    f"columns/{table}",
                    f"a data/{table} file (columns/{table} renames its columns); the config gives none",
                )
            )
            continue
        for contract, user in own.items():
            if user != contract and user not in tables[table].columns:
                present = ", ".join(tables[table].columns) or "none"
                problems.append(
                    Problem(
                        "config",
                        f"columns/{table}/{contract}",
                        f"a column '{user}' in {paths[table]} (columns present: {present}); it has none",
                    )
                )
    return problems


def shared_display(columns: dict, tables: list[str]) -> dict[str, str]:
    """One display mapping for a message about several tables at once (e.g. patients and
    cluster_periods): a contract name the tables spell differently shows every spelling."""
    names: dict[str, dict[str, str]] = {}
    for table in tables:
        for contract, user in table_renames(columns, table).items():
            names.setdefault(contract, {})[table] = user
    out = {}
    for contract, by_table in names.items():
        spellings = {by_table.get(t, contract) for t in tables}
        if len(spellings) == 1:
            out[contract] = spellings.pop()
        else:
            out[contract] = " / ".join(f"{by_table.get(t, contract)} ({t})" for t in tables)
    return out


def _own(columns: dict, table: str) -> dict[str, str]:
    own = columns.get(table)
    return own if isinstance(own, dict) else {}
