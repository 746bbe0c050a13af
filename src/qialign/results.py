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
from qialign.families import FAMILIES, FAMILY_SCALES
from qialign.methods import APPROACHES as APPROACHES  # re-exported: the vocabulary of estimates.csv
from qialign.methods import BAYESIAN_METHODS, CONDITIONAL, METHODS, POPULATION_AVERAGED

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
    "comparable_to",  # frequentist rows: the Bayesian estimand they estimate (comparable_estimand)
    "estimand",
    "conditioning",  # CONDITIONINGS: conditional | population-averaged; blank for rows that are not effects
    "population",  # POPULATIONS: in-sample | new cluster; blank for rows that are not effects
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
#: scales of estimands that are not effects (prob_beats_trend, SDs, NB shape, AR(1) rho, icc / cac,
#: the synthesis's share of variance explained)
PROBABILITY, SD, SHAPE, CORRELATION, LATENT, SHARE = (
    "probability",
    "sd",
    "shape",
    "correlation",
    "latent",
    "share",
)
#: the population-averaged risk ratio of a binary outcome (qialign.models.marginal)
RISK_RATIO = "risk ratio"
#: the synthesis's common scale of continuous outcomes: effect / residual SD
SMD = "standardised mean difference"
SCALES = (*FAMILY_SCALES, RISK_RATIO, SMD, PROBABILITY, SD, SHAPE, CORRELATION, LATENT, SHARE)

#: what an effect row is (DESIGN §5). ``conditional``: cluster-specific, given the cluster's (and
#: cluster-period's) random effects; ``population-averaged``: marginal over the random effects.
#: ``in-sample``: averaged over the analysed cells given their fitted effects; ``new cluster``: a
#: quantity of the population the clusters come from (a model parameter, or a new cluster's
#: expected outcomes). Blank ("") on rows that are not effects (SDs, ICC, shape, rho).
IN_SAMPLE, NEW_CLUSTER = "in-sample", "new cluster"
CONDITIONINGS = (CONDITIONAL, POPULATION_AVERAGED, "")
POPULATIONS = (IN_SAMPLE, NEW_CLUSTER, "")
#: population-averaged effects for a new cluster (qialign.models.marginal): difference (risk,
#: count per patient or mean), ratio (risk or rate) and, for a binary outcome, the odds ratio
PA_DIFFERENCE, PA_RATIO, PA_ODDS_RATIO = "pa_difference", "pa_ratio", "pa_odds_ratio"
#: the natural scale of a non-linear link -> the population-averaged estimand on that scale
PA_ESTIMAND_OF_SCALE = {
    f.natural_scale: PA_ODDS_RATIO if f.kind == "binary" else PA_RATIO
    for f in FAMILIES.values()
    if f.link != "identity"
}
#: scales of identity-link families (gaussian, lognormal's log y): there conditional and
#: population-averaged contrasts coincide
LINEAR_SCALES = frozenset(
    s for f in FAMILIES.values() if f.link == "identity" for s in (f.link_scale, f.natural_scale)
)


def comparable_estimand(method: str, estimand: str, scale: str) -> str:
    """The Bayesian estimand that a frequentist row estimates, blank when none does.

    A conditional method (the mixed model), or any method on an identity link, estimates the
    same-named Bayesian estimand. A population-averaged method (GEE, cluster-robust GLM, segmented
    regression) on a log or logit link estimates the population-averaged effect: its
    ``treatment_effect_natural`` (odds ratio, rate ratio) is comparable with pa_odds_ratio /
    pa_ratio; its link-scale rows and interactions with nothing the Bayesian fit reports."""
    if METHODS[method].conditioning == CONDITIONAL or scale in LINEAR_SCALES:
        return estimand
    return PA_ESTIMAND_OF_SCALE.get(scale, "") if estimand == "treatment_effect_natural" else ""


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
    """A fit's estimand table (``models.estimands.estimates``, which says each row's conditioning
    and population) as ESTIMATE_COLUMNS rows."""
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
    ``model``: conditioning from the method, a new cluster's population, the Bayesian estimand
    each row estimates (:func:`comparable_estimand`), the one reference row per estimand marked
    (:func:`mark_reference`)."""
    unknown = sorted(set(freq["method"]) - {m for m, x in METHODS.items() if x.approach == "frequentist"})
    if unknown:
        raise ValueError(f"cross-check methods {unknown} are not in qialign.methods.METHODS")
    out = freq.assign(
        trial=trial,
        outcome=outcome,
        model=model,
        approach="frequentist",
        comparable_to=[
            comparable_estimand(*k) for k in zip(freq["method"], freq["estimand"], freq["scale"], strict=True)
        ],
        conditioning=[METHODS[m].conditioning for m in freq["method"]],
        population=NEW_CLUSTER,
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


#: the synthesis step's files in ``results/synthesis/`` (workflow/rules/synthesis.smk), written by
#: ``steps/synthesis.py``, read by ``report/synthesis_page.py``
SYNTHESIS_FILES = {
    "estimates": "estimates.csv",  # ESTIMATE_COLUMNS, trial "synthesis"
    "wards": "wards.csv",  # WARD_COLUMNS
    "posterior": "posterior.nc",
    "record": "synthesis.json",  # what was pooled, from which files, settings, diagnostics, timings
}
#: ``wards.csv``: one row per ward pooled: its trial's posterior mean and SD of the ward effect (common
#: scale), its measured alignment, SE and standardised value, and the synthesis's fitted line there
WARD_COLUMNS = (
    "trial", "cluster", "effect", "effect_sd", "alignment", "alignment_se", "alignment_z",
    "alignment_z_posterior", "fitted",
)  # fmt: skip


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
    #: ``propagation: joint``: how the chains' modes of gamma were resolved (qialign.inference.modes)
    gamma_modes: dict | None
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
