"""Power of a trial's own schedule (and of it repeated) from its prepared cells: ``power.csv``.

The design is read off the outcome's cells, not assumed: X[j, t] is the treated indicator of
cluster j in period t (NaN where the cluster-period was not observed), m[j, t] its patients.
The total variance comes from the data: p(1 - p) for a binary outcome (p the overall risk), the
pooled variance of y (gaussian) or log y (lognormal), so each ICC is on that scale (``icc_scale``;
for a binary outcome the proportion scale, not the model's latent logit scale). For each ICC x
CAC x IAC x decay of the config the GLS variance of the treatment effect, and of the treatment x
alignment interaction (the trial's own standardised alignment when scored, else alignment balanced
within sequences), gives power with a t reference on ``df`` (clusters - 2 unless configured) and
the minimum detectable effect MDE = (t_{1-alpha/2, df} + t_{target, df}) SE. Rows with ``search``
``clusters`` / ``cluster_size`` give the smallest number of clusters (the trial's sequences, added
in turn) or patients per cluster-period reaching the target power for each configured effect.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.special import stdtrit

from qialign.alignment import standardise_over_clusters
from qialign.alignment.debias import MODERATOR_COLUMN
from qialign.config import TrialConfig, load_trial_config, power_outcome, trial_config
from qialign.data.io import read_results_parquet
from qialign.errors import QialignError
from qialign.families import FAMILIES, POWER_FAMILIES
from qialign.ids import sort_ids
from qialign.power import VarianceComponents, interaction_variance, power, treatment_variance
from qialign.power.search import smallest_reaching
from qialign.steps.alignment import moderator_alignment

#: what ``search`` says a row is: the configured grid, or the smallest clusters / cluster size
SEARCHES = ("grid", "clusters", "cluster_size")
#: how far a search looks before it reports the target unreachable
SEARCH_LIMIT = {"clusters": 10_000, "cluster_size": 100_000}
#: the interaction's moderator: the trial's own scores, or the balanced-within-sequences assumption
MODERATORS = ("trial alignment", "balanced within sequences")
COLUMNS = [
    "trial", "outcome", "design", "replicates", "clusters", "periods", "m", "icc", "icc_scale",
    "cac", "iac", "decay", "total_variance", "estimand", "moderator", "effect", "se", "df",
    "power", "mde", "target", "alpha", "method", "search",
]  # fmt: skip


@dataclass(frozen=True)
class Schedule:
    """A trial's schedule: treated (NaN unobserved) and patients per cluster-period (1 where
    unobserved: such cells carry no information whatever m is), and standardised alignment z."""

    X: np.ndarray
    m: np.ndarray
    z: np.ndarray | None = None

    @property
    def clusters(self) -> int:
        return self.X.shape[0]

    def mean_m(self) -> float:
        return float(np.nanmean(np.where(np.isnan(self.X), np.nan, self.m)))

    def repeated(self, k: int) -> Schedule:
        """The schedule repeated k times (k x the clusters, same alignment in each repeat)."""
        return self.first(k * self.clusters)

    def first(self, n: int) -> Schedule:
        """n clusters taken from the trial's in turn (cluster i is trial cluster i mod I)."""
        rows = np.arange(n) % self.clusters
        return Schedule(self.X[rows], self.m[rows], None if self.z is None else self.z[rows])

    def with_m(self, m: float) -> Schedule:
        """Every observed cluster-period with m patients."""
        return replace(self, m=np.where(np.isnan(self.X), 1.0, float(m)))


def schedule(cells: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, list, list]:
    """(X, m, clusters, periods): treated indicator and patients per cluster-period, NaN if unobserved."""
    cp = cells.groupby(["cluster", "period"], as_index=False).agg(n=("n", "sum"), treated=("treated", "max"))
    X = cp.pivot(index="cluster", columns="period", values="treated")
    X = X.reindex(sort_ids(X.index))  # clusters in the one order of ids
    m = cp.pivot(index="cluster", columns="period", values="n").reindex_like(X)
    return X.to_numpy(float), m.to_numpy(float), X.index.tolist(), X.columns.tolist()


def total_variance(cells: pd.DataFrame, family: str) -> float:
    n = cells["n"].sum()
    if FAMILIES[family].kind == "binary":
        p = cells["events"].sum() / n
        return float(p * (1 - p))
    mean = cells["sum"].sum() / n
    return float((cells["sumsq"].sum() - n * mean**2) / (n - 1))


def icc_scale(family: str) -> str:
    """The scale of the total variance, hence of the ICCs: proportion, log y or y."""
    if FAMILIES[family].kind == "binary":
        return "proportion"
    return "log y" if FAMILIES[family].exp_natural else "y"


def trial_alignment(scores: Path | None, wave, clusters: list, score: str = "alignment") -> np.ndarray | None:
    """The trial's alignment per cluster (scores.csv column ``score``) standardised over clusters as
    the model does (None when there are no scores); clusters without a score at z = 0, as in the fit."""
    if scores is None or not Path(scores).is_file():
        return None
    raw, notes, _ = moderator_alignment(Path(scores), wave, [str(c) for c in clusters], score)
    for note in notes:
        print(note)
    return None if raw is None else standardise_over_clusters(raw).to_numpy(float)


def reference_df(trial: TrialConfig, clusters: int) -> float:
    """Degrees of freedom of the t reference: ``power.df``, else clusters - 2."""
    return float(trial.power.df) if trial.power.df is not None else float(clusters - 2)


def standard_error(estimand: str, s: Schedule, vc: VarianceComponents) -> float:
    """GLS SE of the treatment effect or of the treatment x alignment interaction (per SD)."""
    if estimand == "treatment":
        return float(np.sqrt(treatment_variance(s.X, s.m, vc)))
    return float(np.sqrt(interaction_variance(s.X, s.m, vc, s.z)))


def mde(se: float, alpha: float, target: float, df: float) -> float:
    """Minimum detectable effect (t_{1-alpha/2, df} + t_{target, df}) SE."""
    return float((stdtrit(df, 1 - alpha / 2) + stdtrit(df, target)) * se)


def _components(trial: TrialConfig, s2: float):
    pw = trial.power
    for icc, cac, iac, decay in itertools.product(pw.icc, pw.cac, pw.iac, pw.decay):
        vc = VarianceComponents.from_correlations(
            icc=icc, cac=cac, iac=iac, total_variance=s2, cluster_decay=decay
        )
        yield dict(icc=icc, cac=cac, iac=iac, decay=decay, total_variance=s2), vc


def _estimands(trial: TrialConfig, s: Schedule):
    moderator = MODERATORS[0] if s.z is not None else MODERATORS[1]
    yield "treatment", None, trial.power.effects
    yield "interaction", moderator, trial.power.interaction_effects


def _row(trial: TrialConfig, s: Schedule, estimand: str, vc, effect: float, target: float) -> dict:
    """The numbers of one schedule, estimand and effect (NaN effect: SE and MDE only)."""
    pw = trial.power
    df = reference_df(trial, s.clusters)
    se = standard_error(estimand, s, vc)
    achieved = power(effect, se, pw.alpha, df) if np.isfinite(effect) else np.nan
    return dict(
        clusters=s.clusters, m=s.mean_m(), se=se, df=df, power=achieved,
        mde=mde(se, pw.alpha, target, df), effect=effect,
    )  # fmt: skip


def grid_rows(trial: TrialConfig, s: Schedule, s2: float, target: float) -> list[dict]:
    """One row per schedule replicate x ICC x CAC x IAC x decay x estimand x effect."""
    rows = []
    for k in trial.power.replicates:
        design = "trial schedule" if k == 1 else f"trial schedule x{k}"
        sk = s.repeated(k)
        for grid, vc in _components(trial, s2):
            for estimand, moderator, effects in _estimands(trial, s):
                for eff in effects or [np.nan]:
                    row = _row(trial, sk, estimand, vc, eff, target)
                    rows.append(grid | row | dict(design=design, replicates=k, estimand=estimand,
                                                  moderator=moderator, search="grid"))  # fmt: skip
    return rows


def smallest(trial: TrialConfig, s: Schedule, search: str, estimand: str, vc, effect, target):
    """The schedule with the fewest clusters (trial's in turn) or patients per cluster-period
    reaching ``target`` power for ``effect``; None when none up to SEARCH_LIMIT does."""
    pw = trial.power
    resize = s.first if search == "clusters" else s.with_m
    start = 3 if search == "clusters" and pw.df is None else 1  # t df = clusters - 2 >= 1

    def achieved(n: int) -> float:
        si = resize(n)
        se = standard_error(estimand, si, vc)
        return power(effect, se, pw.alpha, reference_df(trial, si.clusters))

    try:
        return resize(smallest_reaching(achieved, target, start, SEARCH_LIMIT[search]))
    except ValueError:
        return None


def search_rows(trial: TrialConfig, s: Schedule, s2: float, target: float) -> list[dict]:
    """For each configured effect and ICC x CAC x IAC x decay: the smallest clusters and cluster
    size reaching ``target``; NaN clusters / m when the search limit does not reach it."""
    rows = []
    for search in SEARCHES[1:]:
        design = "trial sequences" if search == "clusters" else "trial schedule"
        for grid, vc in _components(trial, s2):
            for estimand, moderator, effects in _estimands(trial, s):
                for eff in effects:
                    found = smallest(trial, s, search, estimand, vc, eff, target)
                    row = {"clusters": np.nan, "m": np.nan, "effect": eff}
                    if found is not None:
                        row = _row(trial, found, estimand, vc, eff, target)
                    rows.append(grid | row | dict(design=design, replicates=np.nan,
                                                  estimand=estimand, moderator=moderator,
                                                  search=search))  # fmt: skip
    return rows


def power_rows(
    trial: TrialConfig,
    outcome: str,
    cells: pd.DataFrame,
    alignment: np.ndarray | None = None,
    target: float | None = None,
) -> pd.DataFrame:
    """The grid rows then the search rows of :data:`COLUMNS` (``target`` overrides the config's)."""
    X, m, _, periods = schedule(cells)
    s = Schedule(X, np.where(np.isnan(X), 1.0, np.nan_to_num(m, nan=0.0)), alignment)
    family = trial.outcomes[outcome].family
    s2 = total_variance(cells, family)
    target = trial.power.target if target is None else target
    rows = grid_rows(trial, s, s2, target) + search_rows(trial, s, s2, target)
    common = dict(
        trial=trial.id, outcome=outcome, periods=len(periods), icc_scale=icc_scale(family),
        target=target, alpha=trial.power.alpha, method="gls_t",
    )  # fmt: skip
    return pd.DataFrame([common | r for r in rows], columns=COLUMNS)


def power_step(
    config_path: str | Path,
    prepared_root: Path,
    out: Path,
    scores: Path | None = None,
    target: float | None = None,
) -> pd.DataFrame:
    """Write ``out`` (power.csv) for the trial; a header-only table when no outcome is supported.

    ``scores``: alignment/scores.csv (the interaction then uses the trial's own alignment).
    """
    cfg = load_trial_config(config_path)
    outcome = power_outcome(cfg)
    if outcome is None:
        table = pd.DataFrame(columns=COLUMNS)
    else:
        where = prepared_root / outcome
        if not (where / "cells.parquet").is_file() or not (where / "prepared.json").is_file():
            raise QialignError(
                f"{where}: no prepared cells (cells.parquet, prepared.json) for outcome '{outcome}'; "
                f"run the workflow first, e.g. snakemake --cores 2 {where}/cells.parquet"
            )
        cells = read_results_parquet(where / "cells.parquet")
        record = json.loads((where / "prepared.json").read_text())
        if record.get("family", cfg["outcomes"][outcome]["family"]) not in POWER_FAMILIES:
            raise QialignError(f"{outcome}: analytic power covers {', '.join(POWER_FAMILIES)} outcomes")
        _, _, clusters, _ = schedule(cells)
        al = cfg["alignment"]
        z = trial_alignment(scores, al["wave"], clusters, MODERATOR_COLUMN[al["score"]])
        table = power_rows(trial_config(cfg), outcome, cells, z, target)
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out, index=False)
    return table
