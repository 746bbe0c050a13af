"""The results-folder contract: columns of the files that steps write and the report reads.

Defined once here; the producer writes exactly these columns and the reader imports the names,
so a renamed column fails a test instead of silencing the report.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from qialign.config.schema import schema_defaults
from qialign.families import FAMILY_SCALES
from qialign.methods import APPROACHES as APPROACHES  # re-exported: the vocabulary of estimates.csv
from qialign.methods import BAYESIAN_METHODS, METHODS

#: Pareto k above which PSIS-LOO is unreliable for a cell (Vehtari et al. 2024)
PARETO_K_BAD = 0.7

#: ``<outcome>/loo.csv``: one row per model variant, best first (rank 0)
LOO_COLUMNS = (
    "model",  # model id
    "rank",  # 0 = highest elpd
    "elpd",  # expected log predictive density (PSIS-LOO)
    "se",  # its standard error
    "p",  # effective number of parameters p_loo
    "elpd_diff",  # elpd of the best model minus this one's (0 for the best, NaN alone)
    "dse",  # standard error of that difference
    "weight",  # stacking weight (1 alone)
    "n_pareto_k_bad",  # cells with Pareto k > PARETO_K_BAD
    "max_pareto_k",  # largest Pareto k
)

#: ``estimates.csv`` (trial folder; a fit's own folder holds its Bayesian rows): one row per
#: outcome x model x method x estimand, one vocabulary for both approaches
ESTIMATE_COLUMNS = (
    "trial",
    "outcome",
    "model",  # model id; frequentist rows: the Bayesian model they are compared with
    "approach",  # APPROACHES: bayesian | frequentist
    "method",  # an id of qialign.methods.METHODS (bayes, bayes_draws, ..., gee_exchangeable_md, ...)
    "comparable_to",  # frequentist rows: the model id whose same-named estimand they estimate
    "estimand",
    "scale",  # SCALES
    "estimate",
    "lower",
    "upper",
    "interval",  # interval_label(): eti95, hdi90, ci95; blank without an interval
    "reference",  # True on the one frequentist row per outcome x estimand set against the primary
    "r_hat",
    "ess_bulk",
)
#: ``<outcome>/crosscheck.csv``: the frequentist rows of estimates.csv plus their SE, t df and note
CROSSCHECK_COLUMNS = (*ESTIMATE_COLUMNS, "se", "df", "note")

#: the trial config's default ``interval.prob`` (from the schema), for callers without a config
DEFAULT_INTERVAL_PROB = float(schema_defaults("interval")["prob"])
#: interval kinds: equal-tailed and highest-density credible intervals, confidence interval
INTERVAL_KINDS = ("eti", "hdi", "ci")
#: scales of estimands that are not effects (prob_beats_trend, SDs, NB shape, AR(1) rho, icc / cac)
PROBABILITY, SD, SHAPE, CORRELATION, LATENT = "probability", "sd", "shape", "correlation", "latent"
SCALES = (*FAMILY_SCALES, PROBABILITY, SD, SHAPE, CORRELATION, LATENT)


def interval_label(prob: float, kind: str) -> str:
    """``eti`` 0.95 -> ``eti95``; ``ci`` 0.9 -> ``ci90``."""
    if kind not in INTERVAL_KINDS:
        raise ValueError(f"interval kind must be one of {INTERVAL_KINDS}, got {kind!r}")
    return f"{kind}{100 * prob:g}"


#: the frequentist row the report sets against the Bayesian primary, first present wins:
#: small-sample corrected GEE (Mancl-DeRouen, t on clusters - p df; Li, Turner & Preisser 2018)
#: with the nested correlation, then exchangeable; segmented regression for an ITS
REFERENCE_CROSSCHECKS = tuple(
    METHODS[m].id
    for m in (
        "gee_nested_exchangeable_md",
        "gee_exchangeable_md",
        "its_quasipoisson_newey_west",
        "its_quasipoisson",
        "its_ols_newey_west",
        "its_ols",
        "glm_cluster_robust",
    )
)


def mark_reference(freq: pd.DataFrame) -> pd.Series:
    """``reference`` of frequentist rows: per outcome x estimand, True on the first row in
    REFERENCE_CROSSCHECKS order with an estimate (methods not listed come last, then NaN rows)."""
    order = {m: i for i, m in enumerate(REFERENCE_CROSSCHECKS)}
    ranked = freq.assign(
        _missing=freq["estimate"].isna(), _rank=freq["method"].map(order).fillna(len(order))
    ).sort_values(["_missing", "_rank"], kind="stable")
    first = ranked.groupby(["outcome", "estimand"], sort=False).head(1).index
    return pd.Series(freq.index.isin(first), index=freq.index, name="reference")


def bayesian_rows(est: pd.DataFrame, trial: str, outcome: str, model: str, propagation: str) -> pd.DataFrame:
    """A fit's estimand table (``models.estimands.estimates``) as ESTIMATE_COLUMNS rows."""
    out = est.assign(
        trial=trial,
        outcome=outcome,
        model=model,
        approach="bayesian",
        method=BAYESIAN_METHODS[propagation],
        comparable_to="",
        reference=False,
    )
    return out[list(ESTIMATE_COLUMNS)]


def frequentist_rows(freq: pd.DataFrame, trial: str, outcome: str, model: str, prob: float) -> pd.DataFrame:
    """Cross-check rows (``frequentist.COLUMNS``) as CROSSCHECK_COLUMNS rows compared with
    ``model``, the one reference row per estimand marked (:func:`mark_reference`)."""
    unknown = sorted(set(freq["method"]) - {m for m, x in METHODS.items() if x.approach == "frequentist"})
    if unknown:
        raise ValueError(f"cross-check methods {unknown} are not in qialign.methods.METHODS")
    out = freq.assign(
        trial=trial,
        outcome=outcome,
        model=model,
        approach="frequentist",
        comparable_to=model,
        interval=interval_label(prob, "ci"),
        r_hat=float("nan"),
        ess_bulk=float("nan"),
    ).reset_index(drop=True)
    out["reference"] = mark_reference(out)
    return out[list(CROSSCHECK_COLUMNS)]


#: an outcome with fewer events or counts than this under control or under the intervention is
#: flagged: its effect is imprecise and leans on the priors
FEW_EVENTS = 10

#: a cluster whose clinical or managerial survey group has fewer respondents than this is flagged
MIN_ROLE_RESPONDENTS = 3


#: one fit's files in ``results/<trial>/<outcome>/<model>/``: the fit rule's named outputs
#: (workflow/rules/common.smk builds them from this), written by ``steps/fit.py``, read by the report
FIT_FILES = {
    "posterior": "posterior.nc",
    "estimates": "estimates.csv",
    "diagnostics": "diagnostics.csv",
    "effects": "cluster_effects.csv",
    "counterfactual": "counterfactual.csv",
    "counterfactual_by_period": "counterfactual_by_period.csv",
    "ppc": "ppc.csv",
    "exposure_effects": "exposure_effects.csv",
    "record": "fit.json",
}

#: estimands of an eti model (``qialign.models.exposure``; the frequentist ETI cross-check uses the
#: same names): the time-averaged effect over ``estimand_window`` and the point effect at ``pte_at``
#: (Kenny et al. 2022), each also as ``<name>_natural``
TATE, PTE = "tate", "pte"

#: ``exposure_effects.csv``: one row per exposure time of the design, the effect there
EXPOSURE_EFFECT_COLUMNS = (
    "exposure_time",  # periods since the cluster started (1 = its first intervention period)
    "scale",  # the family's link scale
    "estimate",
    "lower",
    "upper",
    "natural_scale",  # the family's natural scale (odds ratio, rate ratio, ...)
    "natural_estimate",
    "natural_lower",
    "natural_upper",
    "interval",  # interval_label()
)


@dataclass(frozen=True)
class FitRecord:
    """``fit.json``: what one fit did and found, written once by the fit step; the report reads it
    instead of re-diagnosing the posterior. A record written before a field existed reads it as None."""

    trial: str
    outcome: str
    model: str
    seed: int
    reliable: bool
    retried: bool
    problems: list[str]
    notes: list[str]
    timings: dict
    sampler: dict
    divergences: int
    ebfmi: float | None
    r_hat_max: float
    ess_bulk_min: float
    ess_tail_min: float
    attempts: int
    ppc: dict
    alignment_propagation: str | None
    alignment_refits: int | None
    #: analysed clusters with no usable alignment score in the moderating wave: analysed at the mean
    #: alignment (z = 0), so their effect modification is assumed, not measured
    unscored_clusters: list[str] | None
    versions: dict
    reproducibility: dict
    git_commit: str | None
    data: dict

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(dataclasses.asdict(self), indent=2, default=str) + "\n")

    @classmethod
    def read(cls, path: Path) -> FitRecord:
        record = json.loads(Path(path).read_text())
        return cls(**{f.name: record.get(f.name) for f in dataclasses.fields(cls)})
