"""Load a trial: read, rename, bin dates, validate everything, derive treatment columns.

Derived columns on ``patients`` and ``cluster_periods``: ``site`` (from clusters; "all" when the
clusters table has no site column), ``treated`` (1 when start_period <= period) and
``exposure_time`` (0 in control cells, period - start_period + 1 in treated cells). A ``treated``
column the user brings is checked against start_period first (:mod:`qialign.data.treatment`).
Renames (``columns:``, global and per table) are :mod:`qialign.data.renames`.

Analysis rows (``analysis_rows``) are one outcome's rows with missing outcomes and covariates
dropped and counted in ``TrialData.exclusions``. Conventions:

- ``fidelity`` (when an implementation table exists) is 0 in control cells (nothing delivered) and
  NaN in treated cells that have no implementation row; rows are not dropped for missing fidelity.
- Count outcomes carry ``exposure``: the outcome's exposure column, else 1 per patient row and
  ``n`` per cluster-period cell (so cells and patient rows agree).
- Gaussian/lognormal outcomes in ``cluster_periods`` are cells with ``y`` = ``<outcome>_mean`` and
  ``sd`` = ``<outcome>_sd`` (sample SD, denominator n - 1; a missing SD counts as 0 when n = 1). For
  lognormal outcomes both are on the log scale (mean and SD of log y).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from qialign.data.io import read_table, sha256_file
from qialign.data.periods import parse_dates, whole_units
from qialign.data.renames import TABLES, absent_renames, id_columns, rename, shared_display, table_renames
from qialign.data.tables import (
    Context,
    cluster_periods_schema,
    clusters_schema,
    implementation_schema,
    num,
    patients_schema,
    survey_schema,
    trials_column,
)
from qialign.data.treatment import treatment_problems
from qialign.data.validate import design_problems, run_schema
from qialign.errors import DataValidationError, Problem, QialignError
from qialign.families import FAMILIES
from qialign.models.identification import identification_problems
from qialign.waves import ONE_WAVE, wave_labels

BASE_COLUMNS = ["cluster", "site", "period", "treated", "exposure_time"]


@dataclass
class TrialData:
    """A validated trial: contract tables with derived columns, provenance and exclusions."""

    cfg: dict
    clusters: pd.DataFrame
    patients: pd.DataFrame | None = None
    cluster_periods: pd.DataFrame | None = None
    survey: pd.DataFrame | None = None
    implementation: pd.DataFrame | None = None
    periods: list[int] = field(default_factory=list)
    files: dict[str, dict] = field(default_factory=dict)
    exclusions: dict[str, dict] = field(default_factory=dict)
    locations: dict[str, str] = field(default_factory=dict)  # outcome -> table

    def table(self, name: str) -> pd.DataFrame | None:
        return getattr(self, name)


def file_hashes(trial: TrialData) -> dict[str, str]:
    """Table name -> sha256 of the file read."""
    return {name: info["sha256"] for name, info in trial.files.items()}


# ---------------------------------------------------------------- reading and renaming
def _read_all(cfg: dict) -> tuple[dict[str, pd.DataFrame], dict[str, dict]]:
    columns = cfg["columns"]
    tables, files, errors = {}, {}, []
    for name in TABLES:
        path = cfg["data"].get(name)
        if path is None:
            continue
        try:
            df = read_table(path, name, id_columns=id_columns(columns, name))
        except QialignError as exc:
            errors.append(str(exc))
            continue
        tables[name] = df
        files[name] = {"path": str(path), "sha256": sha256_file(path), "rows": len(df)}
    if errors:
        raise QialignError("\n".join(errors))
    return tables, files


def _empty_tables(tables: dict, paths: dict) -> list[Problem]:
    """A header-only table that holds clusters, outcomes or survey answers (an empty
    implementation table is allowed: nothing recorded yet)."""
    return [
        Problem(paths[name], None, "data rows below the header; the table has none")
        for name, df in tables.items()
        if df.empty and name != "implementation"
    ]


def _nothing_to_analyse(trial: TrialData, paths: dict) -> list[Problem]:
    """An outcome none of whose rows can be analysed (every outcome or covariate value missing)."""
    out = []
    for name, ex in trial.exclusions.items():
        if ex["analysed"] == 0:
            why = f"{ex['missing_outcome']} miss the outcome, {ex['missing_covariate']} a covariate"
            out.append(
                Problem(
                    paths[ex["table"]],
                    name,
                    f"some analysable rows for outcome '{name}'; all {ex['read']} rows are excluded ({why})",
                )
            )
    return out


# ---------------------------------------------------------------- periods from dates
def _bin_tables(cfg: dict, tables: dict) -> tuple[str | None, pd.Timestamp | None, str]:
    """Replace ``period`` by binned dates where the date column is present (returns dc, origin, unit)."""
    pcfg = cfg["periods"]
    dc, unit = pcfg.get("date_column"), pcfg["unit"]
    if not dc:
        return None, None, unit
    parsed = {
        t: parse_dates(tables[t][dc])
        for t in ("patients", "cluster_periods", "implementation")
        if t in tables and dc in tables[t].columns
    }
    origin = pcfg.get("origin")
    if origin is not None:
        origin = pd.Timestamp(origin)
    else:
        mins = [d.min() for d in parsed.values() if d.notna().any()]
        origin = min(mins) if mins else None
    if origin is None:
        return dc, None, unit
    for t, dates in parsed.items():
        period = whole_units(dates, origin, unit) + 1
        tables[t]["period"] = period.where(period >= 1)
    cl = tables.get("clusters")
    if cl is not None and "start_period" in cl.columns:
        raw = cl["start_period"]
        numeric = num(raw)
        is_date = raw.notna() & numeric.isna()
        binned = whole_units(parse_dates(raw.where(is_date)), origin, unit) + 1
        new = numeric.astype("object")
        new[is_date & binned.notna()] = binned[is_date & binned.notna()].astype(float)
        new[is_date & binned.isna()] = raw[is_date & binned.isna()]
        tables["clusters"] = cl.assign(start_period=new)
    return dc, origin, unit


# ---------------------------------------------------------------- outcome locations
def outcome_columns(name: str, family: str, table: str) -> list[str]:
    """Columns holding an outcome in a table."""
    if table == "cluster_periods" and FAMILIES[family].kind == "continuous":
        return [f"{name}_mean", f"{name}_sd"]
    return [name]


def locate_outcomes(cfg: dict, tables: dict) -> dict[str, str | None]:
    """Outcome -> table: the ``table`` key, else patients when it has the column, else cluster_periods."""
    out = {}
    for name, spec in cfg["outcomes"].items():
        if spec.get("table"):
            out[name] = spec["table"]
        elif "patients" in tables and name in tables["patients"].columns:
            out[name] = "patients"
        elif "cluster_periods" in tables:
            out[name] = "cluster_periods"
        else:
            out[name] = "patients" if "patients" in tables else None
    return out


def _int_or_na(s: pd.Series) -> pd.Series:
    x = num(s)
    ok = np.isfinite(x) & (np.mod(x, 1) == 0)
    return x.where(ok).astype("Int64")


def _period_range(tables: dict) -> tuple[int, int] | None:
    vals = [
        _int_or_na(tables[t]["period"]).dropna()
        for t in ("patients", "cluster_periods")
        if t in tables and "period" in tables[t].columns
    ]
    vals = [v for v in vals if len(v)]
    if not vals:
        return None
    return int(min(v.min() for v in vals)), int(max(v.max() for v in vals))


# ---------------------------------------------------------------- load
def load_trial(cfg: dict) -> TrialData:
    """Read, rename, bin dates, validate every table (all problems at once) and derive columns."""
    tables, files = _read_all(cfg)
    paths = {name: info["path"] for name, info in files.items()}
    columns = cfg["columns"]
    problems = absent_renames(columns, tables, paths) + _empty_tables(tables, paths)
    display = {name: table_renames(columns, name) for name in tables}  # per table: contract -> user
    for name in list(tables):
        tables[name], found = rename(tables[name], display[name], paths[name])
        problems += found
    if problems:
        raise DataValidationError(problems, trial=cfg["id"])
    dc, origin, unit = _bin_tables(cfg, tables)
    locations = locate_outcomes(cfg, tables)
    for name, table in locations.items():
        if table is None or table not in tables:
            problems.append(
                Problem(
                    "config",
                    name,
                    f"outcome '{name}' to live in a {table or 'patients or cluster_periods'} table, "
                    "but the config gives no such data file",
                )
            )
    clusters = tables["clusters"]
    ids = set(clusters["cluster"].dropna()) if "cluster" in clusters.columns else None
    ctx = Context(cfg, paths, display, ids, _period_range(tables), locations, dc, origin, unit)
    cols = {t: set(tables[t].columns) for t in tables}
    # a covariate missing from every table is reported once, against patients if it exists
    cp_elsewhere = None if "patients" in tables else cols["clusters"]
    pt_elsewhere = cols["clusters"] | cols.get("cluster_periods", set())
    builders = {
        "clusters": lambda df: clusters_schema(df, ctx),
        "patients": lambda df: patients_schema(df, ctx, pt_elsewhere),
        "cluster_periods": lambda df: cluster_periods_schema(df, ctx, cp_elsewhere),
        "survey": lambda df: survey_schema(df, ctx),
        "implementation": lambda df: implementation_schema(df, ctx),
    }
    for name, df in tables.items():
        problems += run_schema(builders[name](df), df)

    tables = {name: _coerce(name, df, cfg) for name, df in tables.items()}
    problems += _design(cfg, tables, paths, display["clusters"])
    problems += treatment_problems(tables, paths, display)
    if problems:
        raise DataValidationError(problems, trial=cfg["id"])

    clusters = tables["clusters"]
    for name in ("patients", "cluster_periods"):
        if name in tables:
            tables[name] = derive(tables[name], clusters)
    rng = _period_range(tables)
    trial = TrialData(
        cfg=cfg,
        clusters=clusters,
        patients=tables.get("patients"),
        cluster_periods=tables.get("cluster_periods"),
        survey=tables.get("survey"),
        implementation=tables.get("implementation"),
        periods=list(range(rng[0], rng[1] + 1)) if rng else [],
        files=files,
        locations={k: v for k, v in locations.items() if v},
    )
    rows = {}
    for name in cfg["outcomes"]:
        rows[name], trial.exclusions[name] = _outcome_rows(trial, name)
    problems = _nothing_to_analyse(trial, paths)
    if problems:
        raise DataValidationError(problems, trial=cfg["id"])
    problems = identification_problems(cfg, rows, trial.locations)
    if problems:
        raise DataValidationError(problems, trial=cfg["id"], kind="model")
    return trial


def _coerce(name: str, df: pd.DataFrame, cfg: dict) -> pd.DataFrame:
    """Contract dtypes (invalid values, already reported, become missing); ids are text already."""
    df = df.copy()
    if name == "clusters":
        if "site" not in df.columns:
            df["site"] = "all"
        df["site"] = df["site"].fillna("all")
        df["start_period"] = _int_or_na(df["start_period"]) if "start_period" in df else pd.NA
        if "alignment" in df.columns:
            df["alignment"] = num(df["alignment"])
    for col in ("period", "n"):
        if col in df.columns:
            df[col] = _int_or_na(df[col])
    if name == "survey":  # waves are text labels (qialign.waves); no wave column: one wave
        df["wave"] = wave_labels(df["wave"]) if "wave" in df.columns else ONE_WAVE
    numeric = set(cfg["covariates"])
    for oname, spec in cfg["outcomes"].items():
        numeric |= {oname, f"{oname}_mean", f"{oname}_sd"}
        numeric |= {spec[k] for k in ("exposure", "trials") if spec.get(k)}
    if name == "survey":
        numeric |= {i for its in (cfg["alignment"].get("domains") or {}).values() for i in its}
    if name == "implementation":
        numeric.add(cfg["fidelity"]["column"])
    for col in numeric & set(df.columns) - {"n"}:
        df[col] = num(df[col])
    return df


def _design(cfg: dict, tables: dict, paths: dict, display: dict) -> list[Problem]:
    """Design checks; ``display`` is the clusters table's, the outcome tables' names are shared."""
    clusters = tables["clusters"]
    if not {"cluster", "start_period"} <= set(clusters.columns):
        return []
    frames = [
        tables[t][["cluster", "period"]]
        for t in ("patients", "cluster_periods")
        if t in tables and {"cluster", "period"} <= set(tables[t].columns)
    ]
    if not frames:
        return []
    cells = pd.concat(frames).dropna().drop_duplicates()
    cells = cells[cells["cluster"].isin(set(clusters["cluster"].dropna()))]
    cells = cells.assign(period=cells["period"].astype("int64"))
    cl = clusters.dropna(subset=["cluster"])
    outcome_tables = [t for t in ("patients", "cluster_periods") if t in tables]
    data_display = shared_display(cfg["columns"], outcome_tables)
    return design_problems(cfg, cl, cells, paths, display, data_display)


def derive(df: pd.DataFrame, clusters: pd.DataFrame) -> pd.DataFrame:
    """Add site, treated (0/1) and exposure_time (0 control, period - start + 1 treated)."""
    info = clusters[["cluster", "site", "start_period"]]
    out = df.drop(columns=[c for c in ("site", "treated", "exposure_time") if c in df.columns])
    out = out.merge(info, on="cluster", how="left", validate="many_to_one")
    out.index = df.index
    period = out["period"].astype("int64")
    start = out["start_period"]
    treated = (start.notna() & (period >= start.fillna(0))).astype("int64")
    exposure = np.where(treated == 1, period - start.fillna(0).astype("int64") + 1, 0)
    out["period"] = period
    if "n" in out.columns:
        out["n"] = out["n"].astype("int64")
    out["treated"] = treated.to_numpy()
    out["exposure_time"] = exposure.astype("int64")
    return out.drop(columns="start_period")


# ---------------------------------------------------------------- analysis rows
def analysis_rows(trial: TrialData, outcome: str) -> pd.DataFrame:
    """Row-level data for one outcome (patients or cluster-period cells); see the module docstring."""
    return _outcome_rows(trial, outcome)[0]


def outcome_covariates(trial: TrialData, outcome: str) -> list[str]:
    """Config covariates available to an outcome: in its table or in clusters (config order).

    A patient-level covariate is not available to an outcome that lives in cluster_periods.
    """
    table = trial.table(trial.locations[outcome])
    have = set(table.columns) | set(trial.clusters.columns)
    return [c for c in trial.cfg["covariates"] if c in have]


def bin_covariate(values: pd.Series, cuts: list[float]) -> pd.Series:
    """Categories from ascending cut points: '<c1', 'c1-<c2', ..., '>=ck' (missing stays missing).

    Binned covariates aggregate into few covariate patterns per cell, which keeps fits fast.
    """
    edges = [-np.inf, *cuts, np.inf]
    labels = (
        [f"<{cuts[0]:g}"]
        + [f"{a:g}-<{b:g}" for a, b in zip(cuts[:-1], cuts[1:], strict=True)]
        + [f">={cuts[-1]:g}"]
    )
    binned = pd.cut(values, edges, right=False, labels=labels).astype(object)
    return binned.where(values.notna(), None)


def _outcome_rows(trial: TrialData, outcome: str) -> tuple[pd.DataFrame, dict]:
    cfg = trial.cfg
    if outcome not in cfg["outcomes"]:
        raise QialignError(f"unknown outcome '{outcome}' (outcomes: {', '.join(cfg['outcomes'])})")
    spec = cfg["outcomes"][outcome]
    family, table = spec["family"], trial.locations[outcome]
    df = trial.table(table)
    rows = df[BASE_COLUMNS].copy()
    if trial.implementation is not None:
        rows["fidelity"] = _fidelity(trial, rows)
    covs = outcome_covariates(trial, outcome)
    cl = trial.clusters.set_index("cluster")
    for c in covs:
        rows[c] = num(df[c]) if c in df.columns else rows["cluster"].map(num(cl[c])).to_numpy()
    missing = pd.Series(False, index=df.index)
    covariate_na = rows[covs].isna() if covs else None
    for c, cuts in cfg["covariate_bins"].items():
        if c in covs:
            rows[c] = bin_covariate(rows[c], cuts)
    if table == "patients":
        rows["y"] = num(df[outcome])
        trials = spec.get("trials") if family == "binomial" else None
        rows["n"] = df[trials].astype("int64") if trials else 1
        if FAMILIES[family].kind == "count":
            exp = spec.get("exposure")
            rows["exposure"] = num(df[exp]) if exp else 1.0
            missing |= rows["exposure"].isna()
    else:
        rows["n"] = df["n"].astype("int64")
        if FAMILIES[family].kind == "binary":
            rows["y"] = num(df[outcome])
            rows["n"] = df[trials_column(spec)].astype("int64")
        elif FAMILIES[family].kind == "count":
            rows["y"] = num(df[outcome])
            exp = spec.get("exposure")
            rows["exposure"] = num(df[exp]) if exp else rows["n"].astype(float)
            missing |= rows["exposure"].isna()
        else:
            rows["y"] = num(df[f"{outcome}_mean"])
            sd = num(df[f"{outcome}_sd"])
            rows["sd"] = sd.where(~(sd.isna() & (rows["n"] == 1)), 0.0)
            missing |= rows["sd"].isna()
    missing |= rows["y"].isna()
    cov_na = covariate_na & ~missing.to_numpy()[:, None] if covs else pd.DataFrame()
    cov_missing = cov_na.any(axis=1) if covs else pd.Series(False, index=df.index)
    keep = ~missing & ~cov_missing
    out = rows[keep].reset_index(drop=True)
    lost = pd.DataFrame(
        {
            "cluster": rows["cluster"],
            "period": rows["period"],
            "missing_outcome": missing,
            "missing_covariate": cov_missing,
        }
    )
    lost = (
        lost[~keep]
        .groupby(["cluster", "period"], as_index=False)[["missing_outcome", "missing_covariate"]]
        .sum()
    )
    exclusions = {
        "read": int(len(rows)),
        "missing_outcome": int(missing.sum()),
        "missing_covariate": int(cov_missing.sum()),
        "analysed": int(keep.sum()),
        "missing_by_covariate": {c: int(cov_na[c].sum()) for c in covs},
        "covariates": covs,
        "table": table,
        #: per cluster-period with excluded rows: how many and why (the CONSORT flow by sequence)
        "by_cell": [
            {
                "cluster": str(r.cluster),
                "period": int(r.period),
                "missing_outcome": int(r.missing_outcome),
                "missing_covariate": int(r.missing_covariate),
            }
            for r in lost.itertuples()
        ],  # fmt: skip
    }
    return out, exclusions


def _fidelity(trial: TrialData, rows: pd.DataFrame) -> np.ndarray:
    col = trial.cfg["fidelity"]["column"]
    imp = trial.implementation.dropna(subset=["cluster", "period"])
    imp = imp.assign(period=imp["period"].astype("int64"))
    key = imp.set_index(["cluster", "period"])[col]
    idx = pd.MultiIndex.from_arrays([rows["cluster"], rows["period"]])
    fid = key.reindex(idx).to_numpy(dtype=float)
    return np.where(rows["treated"].to_numpy() == 1, fid, 0.0)
