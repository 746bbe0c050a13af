"""ModelSpec: one fitted model = one ``models:`` entry of a trial config x one outcome.

Defaults come from the trial JSON schema (``$defs/model``, ``$defs/priors``, ``$defs/sampler``), so a
spec built from a short config equals one built from a config validated with defaults filled.
Sampler settings merge schema defaults <- trial ``sampler`` <- the model's own ``sampler``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from functools import cache

from qialign.errors import QialignError
from qialign.families import FAMILIES

DIAGNOSTIC_DEFAULTS = {
    "r_hat_max": 1.01,
    "ess_bulk_min": 400,
    "ess_tail_min": 400,
    "divergences_max": 0,
    "ebfmi_min": 0.3,
    "retry": True,
}
INTERVAL_DEFAULTS = {"prob": 0.95, "kind": "eti"}


@cache
def _schema_defaults() -> dict:
    from qialign.config import trial_schema

    defs = trial_schema()["$defs"]

    def props(name):
        return {k: v["default"] for k, v in defs[name]["properties"].items() if "default" in v}

    return {"model": props("model"), "priors": props("priors"), "sampler": props("sampler")}


def default_priors() -> dict:
    """Prior scales from the schema (``$defs/priors``)."""
    return dict(_schema_defaults()["priors"])


def default_sampler() -> dict:
    """Sampler settings from the schema (``$defs/sampler``)."""
    return dict(_schema_defaults()["sampler"])


#: ``trend: auto`` per design: categorical period effects where concurrent controls separate the
#: trend from the treatment; a linear pre-trend (segmented regression) where none do (period
#: effects would absorb the level change)
AUTO_TREND = {
    "stepped_wedge": "period",
    "controlled_before_after": "period",
    "interrupted_time_series": "linear",
}


def resolved_auto(model: dict, design: str, family: str, table: str | None) -> dict:
    """The model's ``auto`` settings for this design and outcome (the one place they are decided).

    - trend: ``AUTO_TREND``.
    - overdispersion: per cell for counts recorded in cluster_periods, else per patient.
    - cluster_period: AR(1) for an interrupted time series (serially correlated residuals of one
      series; an exchangeable effect per period would be an observation-level effect); none for
      negative-binomial counts recorded per cell, whose gamma mixing already is a cluster-period
      effect (both add variance proportional to m^2 and are only weakly separable: phi and the
      cluster-period SD traded off with ESS ~100); exchangeable otherwise.
    """
    out = dict(model)
    if out.get("trend", "auto") == "auto":
        out["trend"] = AUTO_TREND[design]
    if out.get("overdispersion", "auto") == "auto":
        out["overdispersion"] = "cell" if table == "cluster_periods" else "patient"
    if out.get("cluster_period", "auto") == "auto":
        cell_nb = family == "negative_binomial" and out["overdispersion"] == "cell"
        its = design == "interrupted_time_series"
        out["cluster_period"] = "ar1" if its else "none" if cell_nb else "exchangeable"
    return out


@dataclass
class ModelSpec:
    """Everything needed to build one outcome model.

    Linear predictor (DESIGN §4), link g by family::

        g(E[y]) = mu + f(t) + s(t) + Z beta + X h(e) (theta + gamma A + phi_f F + delta_j)
                  + X (e - 1) kappa + u_site + v_cluster + w_cluster,period

    s(t): seasonality, sum_k a_k sin(2 pi k t / L) + b_k cos(2 pi k t / L) (``harmonics`` K, L =
    ``season_length``); kappa: ``slope_change`` (segmented regression, interrupted time series).
    """

    id: str
    outcome: str
    family: str
    better: str = "lower"
    trend: str = "period"
    spline_df: int = 4
    exposure: str = "step"
    ramp_periods: int = 2
    slope_change: bool = False
    harmonics: int = 0
    season_length: int = 12
    site_effect: bool = True
    cluster_period: str = "exchangeable"
    random_treatment: bool = False
    parametrization: str = "auto"
    #: where a count's overdispersion lives (``nb_shape``): per patient (counts summed from patient
    #: rows) or per cell (counts recorded per cluster-period); ``from_config`` resolves auto
    overdispersion: str = "patient"
    covariates: list[str] = field(default_factory=list)
    moderators: list[str] = field(default_factory=lambda: ["alignment"])
    moderator_main_effects: bool = True
    priors: dict = field(default_factory=default_priors)
    sampler: dict = field(default_factory=default_sampler)
    label: str = ""
    #: store per-cell linear predictors in the posterior (needed by marginal_difference,
    #: counterfactual, posterior predictive checks and LOO); None = when cells <= 20,000.
    store_predictions: bool | None = None

    def __post_init__(self):
        if self.family not in FAMILIES:
            raise QialignError(f"model {self.id}: unknown family '{self.family}'")
        if self.trend not in ("period", "linear", "spline", "rw1"):
            raise QialignError(f"model {self.id}: unknown trend '{self.trend}'")
        if self.exposure not in ("step", "ramp", "eti"):
            raise QialignError(f"model {self.id}: unknown exposure '{self.exposure}'")
        if self.overdispersion not in ("patient", "cell"):
            raise QialignError(f"model {self.id}: unknown overdispersion '{self.overdispersion}'")
        if self.cluster_period not in ("none", "exchangeable", "ar1"):
            raise QialignError(f"model {self.id}: unknown cluster_period '{self.cluster_period}'")
        self.priors = {**default_priors(), **(self.priors or {})}
        self.sampler = {**default_sampler(), **(self.sampler or {})}

    @property
    def link(self) -> str:
        return FAMILIES[self.family].link

    @classmethod
    def from_config(
        cls, model_cfg: dict, outcome: str, outcome_cfg: dict, trial_cfg: dict, table: str | None = None
    ) -> ModelSpec:
        """Build from one ``models:`` entry, the outcome's entry and the (validated) trial config;
        ``table`` is where the outcome was recorded (``overdispersion: auto`` follows it)."""
        d = {**_schema_defaults()["model"], **model_cfg}
        design = trial_cfg.get("design", "stepped_wedge")
        d = resolved_auto(d, design, outcome_cfg["family"], table)
        covs = list(trial_cfg.get("covariates", [])) if d.get("covariates", True) else []
        sampler = {**default_sampler(), **trial_cfg.get("sampler", {}), **d.get("sampler", {})}
        return cls(
            id=d["id"],
            outcome=outcome,
            family=outcome_cfg["family"],
            better=outcome_cfg.get("better", "lower"),
            trend=d["trend"],
            spline_df=int(d["spline_df"]),
            exposure=d["exposure"],
            ramp_periods=int(d["ramp_periods"]),
            slope_change=bool(d.get("slope_change", False)),
            harmonics=int(d.get("harmonics", 0)),
            season_length=int(d.get("season_length", 12)),
            site_effect=bool(d["site_effect"]),
            cluster_period=d["cluster_period"],
            random_treatment=bool(d["random_treatment"]),
            parametrization=d.get("parametrization", "auto"),
            overdispersion=d["overdispersion"],
            covariates=covs,
            moderators=list(d["moderators"]),
            moderator_main_effects=bool(d["moderator_main_effects"]),
            priors={**default_priors(), **d.get("priors", {})},
            sampler=sampler,
            label=d.get("label", ""),
        )

    def to_dict(self) -> dict:
        return asdict(self)
