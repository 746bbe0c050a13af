"""Text summary of a validated trial for ``qialign validate`` (with a design diagram)."""

from __future__ import annotations

import pandas as pd

from qialign.data.prepare import TrialData
from qialign.ids import ids_key
from qialign.waves import wave_order


def _cells(trial: TrialData) -> pd.DataFrame:
    """Distinct (cluster, period, treated) with data in patients or cluster_periods."""
    frames = [
        t[["cluster", "period", "treated"]] for t in (trial.patients, trial.cluster_periods) if t is not None
    ]
    return pd.concat(frames).drop_duplicates(["cluster", "period"])


def design_diagram(trial: TrialData) -> str:
    """One line per cluster (grouped by site), one character per period: '.', '#', '-'."""
    cells = _cells(trial).set_index(["cluster", "period"])["treated"]
    periods = trial.periods
    width = max([len(str(c)) for c in trial.clusters["cluster"]] + [6]) + 2
    lines = []
    if periods:
        tens = "".join(str(p // 10 % 10) if p >= 10 else " " for p in periods)
        if tens.strip():
            lines.append(" " * width + tens)
        lines.append(" " * (width - 7) + "period " + "".join(str(p % 10) for p in periods))
    in_order = trial.clusters.sort_values(["site", "cluster"], key=ids_key)  # natural order of ids
    for site, group in in_order.groupby("site", sort=False):
        lines.append(f"{site}")
        for cluster in group["cluster"]:
            row = []
            for p in periods:
                t = cells.get((cluster, p))
                row.append("-" if t is None else ("#" if t == 1 else "."))
            lines.append(f"  {cluster}".ljust(width) + "".join(row))
    lines.append("legend: '.' control  '#' intervention  '-' no data")
    return "\n".join(lines)


def _mmm(values: pd.Series) -> str:
    if not len(values):
        return "none"
    return f"min {int(values.min())}, median {values.median():g}, max {int(values.max())}"


def summarise(trial: TrialData) -> str:
    """Compact text: trial, design, clusters, sites, periods, cell sizes, outcomes, survey, diagram."""
    cfg = trial.cfg
    cl = trial.clusters
    out = [f"Trial {cfg['id']}" + (f": {cfg['title']}" if cfg.get("title") else "")]
    if cfg.get("synthetic"):
        out.append("SYNTHETIC DATA (simulated; no real patients or staff)")
    out.append(f"Design: {cfg['design']}")
    sites = cl.groupby("site").size()
    never = int(cl["start_period"].isna().sum())
    out.append(
        f"Clusters: {len(cl)} in {len(sites)} site(s) ("
        + ", ".join(f"{s}: {k}" for s, k in sites.items())
        + f"); {never} never start"
    )
    if trial.periods:
        out.append(f"Periods: {trial.periods[0]}..{trial.periods[-1]} ({len(trial.periods)})")
    starts = cl["start_period"].dropna().astype(int).value_counts().sort_index()
    if len(starts):
        out.append("Starts: " + ", ".join(f"period {p}: {k} cluster(s)" for p, k in starts.items()))
    out.append("Files:")
    for name, info in trial.files.items():
        out.append(f"  {name}: {info['path']} ({info['rows']} rows, sha256 {info['sha256'][:12]})")
    if trial.patients is not None:
        per = trial.patients.groupby(["cluster", "period"]).size()
        out.append(f"Patients: {len(trial.patients)}; per cluster-period {_mmm(per)}")
    if trial.cluster_periods is not None:
        cp = trial.cluster_periods
        out.append(f"Cluster-period cells: {len(cp)}; n per cell {_mmm(cp['n'])}")
    out.append("Outcomes:")
    for name, spec in cfg["outcomes"].items():
        ex = trial.exclusions.get(name, {})
        line = (
            f"  {name}: {spec['family']} in {trial.locations.get(name)}; read {ex.get('read', 0)}, "
            f"missing outcome {ex.get('missing_outcome', 0)}, "
            f"missing covariate {ex.get('missing_covariate', 0)}, analysed {ex.get('analysed', 0)}"
        )
        by_cov = {c: k for c, k in ex.get("missing_by_covariate", {}).items() if k}
        if by_cov:
            line += " (" + ", ".join(f"{c}: {k}" for c, k in by_cov.items()) + ")"
        out.append(line)
    if trial.survey is not None:
        sv = trial.survey
        out.append(f"Survey: {len(sv)} respondents; by role and wave:")
        tab = sv.groupby(["role", "wave"]).size().unstack("wave", fill_value=0)
        tab = tab[wave_order(tab.columns, trial.cfg["alignment"].get("waves"))]
        tab.columns = [f"wave {w}" for w in tab.columns]
        out += ["  " + line for line in tab.to_string().splitlines()]
    if trial.implementation is not None:
        out.append(f"Implementation: {len(trial.implementation)} cluster-period rows")
    out.append("Design diagram:")
    out.append(design_diagram(trial))
    return "\n".join(out)
