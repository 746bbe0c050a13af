"""``qialign init``: draft a trial config from the user's own files, then validate it.

Every guess is written into the YAML as a comment, so the user reviews a short file instead of
writing one from config/README.md:

- contract columns by name (case-insensitive; ``CANDIDATES``): cluster, period, treatment, n and
  exposure; an ``id`` column counts as the cluster only when its values repeat (one per cluster);
- period dummies (``period1``, ``period2``, ...) are skipped;
- each remaining numeric column is an outcome with a family guessed from its values: 0/1 ->
  bernoulli; events <= n in cluster_periods -> binomial; non-negative integers -> negative_binomial
  with the exposure column when there is one (else poisson); positive and right-skewed (skewness
  > 1) -> lognormal; otherwise gaussian; ``<y>_mean`` / ``<y>_sd`` pairs -> gaussian cell means;
- clusters: the given clusters file, or one derived from the 0/1 treatment column (each cluster's
  first treated period is its start; treatment must never switch off);
- the design from the start periods: some clusters never start -> controlled before-after; one
  common start -> interrupted time series; staggered starts -> stepped wedge. No ``models:`` key:
  the defaults follow the design (DESIGN §4).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from qialign.config import load_trial_config
from qialign.data.io import read_table
from qialign.errors import QialignError

CANDIDATES = {
    "cluster": ("cluster", "ward", "unit", "clinic", "practice", "hospital", "team", "id"),
    "period": ("period", "month", "time", "week", "quarter", "step"),
    "treatment": ("treatment", "treated", "intervention", "trt", "exposed"),
    "n": ("n", "trials", "patients", "admissions", "denominator", "total"),
    "exposure": ("bed_days", "beddays", "person_time", "persontime", "stdpop", "population", "exposure"),
    "start_period": ("start_period", "start", "start_month", "start_time"),
    "site": ("site", "hospital", "trust", "region"),
}
DUMMY = re.compile(r"^(period|month|time|week)_?\d+$", re.IGNORECASE)


def _find(df: pd.DataFrame, key: str, taken: set[str] = frozenset()) -> str | None:
    """The first column named like a ``CANDIDATES[key]`` entry (an id must repeat to be a cluster)."""
    lower = {c.lower(): c for c in df.columns if c not in taken}
    for name in CANDIDATES[key]:
        col = lower.get(name)
        if col is None:
            continue
        if key == "cluster" and name == "id" and df[col].nunique() > len(df) / 2:
            continue
        return col
    return None


def guess_family(values: pd.Series, table: str, exposure: str | None, n: pd.Series | None) -> tuple[str, str]:
    """(family, why) for one outcome column."""
    x = pd.to_numeric(values, errors="coerce").dropna()
    integer = len(x) > 0 and bool(np.all(np.mod(x, 1) == 0)) and x.min() >= 0
    if len(x) and set(np.unique(x)) <= {0, 1} and table == "patients":
        return "bernoulli", "values 0/1"
    if (
        integer
        and table == "cluster_periods"
        and n is not None
        and (x <= n.loc[x.index]).all()
        and not exposure
    ):
        return "binomial", "whole numbers never above n: events out of n trials"
    if integer and len(np.unique(x)) > 2:
        if exposure:
            return "negative_binomial", f"non-negative counts, exposure {exposure}"
        return "poisson", "non-negative counts, no exposure column"
    if len(x) > 2 and x.min() > 0 and stats.skew(x) > 1:
        return "lognormal", f"positive, right-skewed (skewness {stats.skew(x):.1f})"
    return "gaussian", "continuous"


def _start_periods(df: pd.DataFrame, cluster: str, period: str, treatment: str, path: str) -> pd.DataFrame:
    """Each cluster's first treated period from a 0/1 treatment column (empty: never treated)."""
    d = df[[cluster, period, treatment]].copy()
    d["_p"] = pd.to_numeric(d[period], errors="coerce")
    d["_t"] = pd.to_numeric(d[treatment], errors="coerce")
    bad = d[~d["_t"].isin([0, 1])]
    if len(bad):
        rows = ", ".join(map(str, bad.index[:10]))
        raise QialignError(f"{path}, column '{treatment}': expected 0 or 1; rows {rows}")
    per = d.groupby([cluster, "_p"])["_t"].max().reset_index().sort_values([cluster, "_p"])
    off = per.groupby(cluster)["_t"].diff() < 0
    if off.any():
        where = per[off].head(5)
        pairs = ", ".join(f"{c} at {period} {p:g}" for c, p in zip(where[cluster], where["_p"], strict=True))
        raise QialignError(
            f"{path}, column '{treatment}': treatment switches off (1 then 0) for {pairs}; a cluster "
            "stays under the intervention once it starts"
        )
    first = per[per["_t"] == 1].groupby(cluster)["_p"].min()
    clusters = pd.DataFrame({"cluster": sorted(per[cluster].unique())})
    clusters["start_period"] = clusters["cluster"].map(first).astype("Int64")
    return clusters


def detect_design(starts: pd.Series) -> tuple[str, str]:
    """(design, why) from the clusters' start periods (missing = never starts)."""
    started = starts.dropna()
    if started.empty:
        raise QialignError("no cluster ever starts the intervention: there is no effect to estimate")
    if len(started) < len(starts):
        return "controlled_before_after", f"{len(starts) - len(started)} cluster(s) never start (controls)"
    if started.nunique() == 1:
        return "interrupted_time_series", f"every series starts at period {int(started.iloc[0])}"
    return "stepped_wedge", f"staggered starts ({started.nunique()} start periods)"


def _outcomes(df: pd.DataFrame, table: str, used: set[str], exposure: str | None, n: str | None) -> list:
    """(name, family, why) for every outcome column; cell means as ``<y>_mean``/``<y>_sd``."""
    out, taken = [], set(used)
    for col in df.columns:
        if col in taken or DUMMY.match(col) or not pd.api.types.is_numeric_dtype(df[col]):
            continue
        if table == "cluster_periods" and col.endswith("_mean") and f"{col[:-5]}_sd" in df:
            out.append((col[:-5], "gaussian", "cell means and SDs (lognormal if they are of log y)"))
            taken |= {col, f"{col[:-5]}_sd"}
            continue
        nn = df[n] if n else None
        out.append((col, *guess_family(df[col], table, exposure, nn)))
    if not out:
        raise QialignError(f"no numeric outcome column found among {', '.join(df.columns)}")
    return out


MANAGERIAL = re.compile(r"manag|matron|director|lead|head|admin|exec|supervis|chief", re.IGNORECASE)
SURVEY_KEYS = {
    "respondent": ("respondent", "respondent_id", "staff_id", "id"),
    "role": ("role", "job", "staff_group", "profession", "job_role"),
    "wave": ("wave", "survey_wave", "round"),
}


def _survey_block(path: str, cluster_names: tuple[str, ...]) -> tuple[list[str], dict]:
    """YAML lines of the ``alignment:`` block for a staff survey, and its column renames."""
    df = read_table(path, "survey")
    lower = {c.lower(): c for c in df.columns}
    cols = {k: next((lower[n] for n in names if n in lower), None) for k, names in SURVEY_KEYS.items()}
    cols["cluster"] = next((lower[n] for n in cluster_names if n in lower), None)
    for key in ("respondent", "role", "cluster"):
        if cols[key] is None:
            raise QialignError(
                f"{path}: no {key} column found (looked for {', '.join(SURVEY_KEYS.get(key, cluster_names))})"
            )
    mapped = {c for c in cols.values() if c}
    items = [c for c in df.columns if c not in mapped and pd.api.types.is_numeric_dtype(df[c])]
    if not items:
        raise QialignError(f"{path}: no numeric item columns (Likert answers) found")
    roles = sorted(df[cols["role"]].dropna().astype(str).unique())
    managerial = [r for r in roles if MANAGERIAL.search(r)]
    clinical = [r for r in roles if r not in managerial]
    values = pd.to_numeric(df[items].stack(), errors="coerce").dropna()
    lines = [
        "alignment:",
        "  source: survey",
        "  roles:  # guess: managerial = roles named like manager/matron/director/lead/head",
        f"    clinical: {_flow(clinical)}",
        f"    managerial: {_flow(managerial)}",
        f"  scale: {{min: {int(values.min())}, max: {int(values.max())}}}  # from the answers",
        "  domains:  # one domain of every item: group the items into the survey's domains",
        f"    all: {_flow(items)}",
    ]
    renames = {k: v for k, v in cols.items() if v and v != k}
    return lines, renames


def _columns_block(renames: dict[str, dict]) -> list[str]:
    """``columns:`` lines, one mapping per table that needs renames (contract name: your column)."""
    used = {t: m for t, m in renames.items() if m}
    if not used:
        return []
    lines = ["columns:  # per table, contract name: your column"]
    for table, mapping in used.items():
        pairs = ", ".join(f"{k}: {v}" for k, v in mapping.items())
        lines.append(f"  {table}: {{{pairs}}}")
    return lines


def _flow(values) -> str:
    return "[" + ", ".join(str(v) for v in values) + "]"


def _data_table(patients: str | None, cluster_periods: str | None) -> tuple[str, str, pd.DataFrame]:
    if bool(patients) == bool(cluster_periods):
        raise QialignError("give one data file: --patients FILE or --cluster-periods FILE")
    table, path = ("patients", patients) if patients else ("cluster_periods", cluster_periods)
    return table, path, read_table(path, table)


def _clusters(
    args: dict, df: pd.DataFrame, cols: dict, clusters_out: Path
) -> tuple[pd.DataFrame, list, dict]:
    """The clusters table (read, or derived and written), the YAML lines saying which, and the
    clusters file's renames."""
    if args.get("clusters"):
        cl = read_table(args["clusters"], "clusters")
        c = _find(cl, "cluster")
        s = _find(cl, "start_period")
        if c is None or s is None:
            raise QialignError(f"{args['clusters']}: needs a cluster and a start_period column")
        out = cl.rename(columns={c: "cluster", s: "start_period"})
        renames = {k: v for k, v in (("cluster", c), ("start_period", s)) if k != v}
        return out, [f"  clusters: {args['clusters']}"], renames
    if cols["treatment"] is None:
        raise QialignError(
            f"{args['path']}: no clusters file given and no 0/1 treatment column found "
            f"(looked for {', '.join(CANDIDATES['treatment'])}); give --clusters FILE"
        )
    out = _start_periods(df, cols["cluster"], cols["period"], cols["treatment"], args["path"])
    clusters_out.parent.mkdir(parents=True, exist_ok=True)
    out.to_csv(clusters_out, index=False)
    note = f"  # derived from '{cols['treatment']}': each cluster's first treated period"
    return out, [f"  clusters: {clusters_out}{note}"], {}


def draft_config(trial_id: str, **args) -> tuple[str, Path | None]:
    """The YAML text of a new trial config (and the clusters file written, if one was derived)."""
    table, path, df = _data_table(args.get("patients"), args.get("cluster_periods"))
    args["path"] = path
    cols = {"cluster": _find(df, "cluster")}
    taken = {cols["cluster"]} - {None}
    for key in ("period", "treatment", "n", "exposure"):
        cols[key] = _find(df, key, taken)
        taken |= {cols[key]} - {None}
    for key in ("cluster", "period"):
        if cols[key] is None:
            raise QialignError(f"{path}: no {key} column found (looked for {', '.join(CANDIDATES[key])})")
    if table == "cluster_periods" and cols["n"] is None:
        raise QialignError(f"{path}: no n column (patients per cluster-period) found")
    derived = Path(args.get("clusters_out") or Path(path).with_name(f"{trial_id}_clusters.csv"))
    clusters, data_lines, cluster_renames = _clusters(args, df, cols, derived)
    design, why = detect_design(clusters["start_period"])
    outcomes = _outcomes(df, table, taken, cols["exposure"], cols["n"])
    cols["treated"] = cols.pop("treatment")  # the contract name: checked against the start periods
    renames = {table: {k: v for k, v in cols.items() if v and v != k and k != "exposure"}}
    renames["clusters"] = cluster_renames
    lines = [
        f"# Drafted by `qialign init` from {path}: review every '# guess' line, then run",
        f"#   qialign validate {args.get('out', f'config/trials/{trial_id}.yaml')}",
        f"id: {trial_id}",
        f'title: "{trial_id}"',
        f"design: {design}  # guess: {why}",
        "data:",
        *data_lines,
        f"  {table}: {path}",
    ]
    if args.get("survey"):
        lines.append(f"  survey: {args['survey']}")
    survey_lines, renames["survey"] = (
        _survey_block(args["survey"], CANDIDATES["cluster"]) if args.get("survey") else ([], {})
    )
    lines += _columns_block(renames)
    lines.append("outcomes:")
    for name, family, reason in outcomes:
        extra = (
            f", exposure: {cols['exposure']}"
            if family in ("poisson", "negative_binomial") and cols["exposure"]
            else ""
        )
        lines.append(f"  {name}: {{family: {family}{extra}, better: lower}}  # guess: {reason}; set better")
    if survey_lines:
        lines += survey_lines
    else:
        lines.append("alignment: {source: none}  # no staff survey given: no alignment moderator")
    lines += [
        "# models: none listed; the defaults follow the design (config/README.md)",
        f"seed: {args.get('seed', 1)}",
    ]
    return "\n".join(lines) + "\n", None if args.get("clusters") else derived


def init_trial(trial_id: str, out: str | Path, force: bool = False, **args) -> str:
    """Write the drafted config to ``out``, validate it and return the text to print."""
    from qialign.data import load_trial, summarise

    out = Path(out)
    if out.exists() and not force:
        raise QialignError(f"{out} exists; pass --force to overwrite it")
    text, derived = draft_config(trial_id, out=str(out), **args)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    summary = summarise(load_trial(load_trial_config(out)))
    wrote = f"wrote {out}" + (f" and {derived}" if derived else "")
    nxt = f".venv/bin/snakemake --cores 2 --config 'trials=[\"{trial_id}\"]'"
    return f"{wrote}\n\n{text}\n{summary}\n\nnext: review the '# guess' lines, then run\n  {nxt}"
