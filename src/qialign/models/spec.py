"""ModelSpec: one fitted model = one ``models:`` entry of a trial config x one outcome.

Every value comes from the validated trial config, whose defaults the schema filled
(:mod:`qialign.config`); ModelSpec has no defaults of its own. Sampler settings merge the trial's
``sampler`` <- the model's own ``sampler``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from qialign.config import sampler_for, synthetic_trial
from qialign.errors import QialignError
from qialign.families import FAMILIES

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
    if out["trend"] == "auto":
        out["trend"] = AUTO_TREND[design]
    if out["overdispersion"] == "auto":
        out["overdispersion"] = "cell" if table == "cluster_periods" else "patient"
    if out["cluster_period"] == "auto":
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
    better: str
    trend: str
    spline_df: int
    exposure: str
    #: eti: [first, last] exposure times of the ``tate`` estimand; None = all of the design's
    estimand_window: tuple[int, int] | None
    #: eti: the exposure time of the ``pte`` estimand; None = the design's last
    pte_at: int | None
    ramp_periods: int
    slope_change: bool
    harmonics: int
    season_length: int
    site_effect: bool
    cluster_period: str
    random_treatment: bool
    parametrization: str
    #: where a count's overdispersion lives (``nb_shape``): per patient (counts summed from patient
    #: rows) or per cell (counts recorded per cluster-period); ``from_config`` resolves auto
    overdispersion: str
    covariates: list[str]
    moderators: list[str]
    moderator_main_effects: bool
    priors: dict
    sampler: dict
    label: str | None
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
        for key in ("estimand_window", "pte_at"):
            if getattr(self, key) is not None and self.exposure != "eti":
                raise QialignError(f"models[{self.id}].{key} needs exposure: eti (got {self.exposure})")
        w = self.estimand_window
        if w is not None and w[0] > w[1]:
            raise QialignError(f"models[{self.id}].estimand_window {list(w)}: first exposure time > last")
        if self.overdispersion not in ("patient", "cell"):
            raise QialignError(f"model {self.id}: unknown overdispersion '{self.overdispersion}'")
        if self.cluster_period not in ("none", "exchangeable", "ar1"):
            raise QialignError(f"model {self.id}: unknown cluster_period '{self.cluster_period}'")

    @property
    def link(self) -> str:
        return FAMILIES[self.family].link

    @classmethod
    def from_config(
        cls, model_cfg: dict, outcome: str, outcome_cfg: dict, trial_cfg: dict, table: str | None = None
    ) -> ModelSpec:
        """Build from one ``models:`` entry, the outcome's entry and the trial config, all validated
        (schema-filled: :func:`qialign.config.validate_trial_config`, or
        :func:`qialign.config.synthetic_trial` for simulated cells); ``table`` is where the outcome
        was recorded (``overdispersion: auto`` follows it)."""
        d = resolved_auto(model_cfg, trial_cfg["design"], outcome_cfg["family"], table)
        return cls(
            id=d["id"],
            outcome=outcome,
            family=outcome_cfg["family"],
            better=outcome_cfg["better"],
            trend=d["trend"],
            spline_df=int(d["spline_df"]),
            exposure=d["exposure"],
            estimand_window=None if d["estimand_window"] is None else tuple(d["estimand_window"]),
            pte_at=d["pte_at"],
            ramp_periods=int(d["ramp_periods"]),
            slope_change=bool(d["slope_change"]),
            harmonics=int(d["harmonics"]),
            season_length=int(d["season_length"]),
            site_effect=bool(d["site_effect"]),
            cluster_period=d["cluster_period"],
            random_treatment=bool(d["random_treatment"]),
            parametrization=d["parametrization"],
            overdispersion=d["overdispersion"],
            covariates=list(trial_cfg["covariates"]) if d["covariates"] else [],
            moderators=list(d["moderators"]),
            moderator_main_effects=bool(d["moderator_main_effects"]),
            priors=dict(d["priors"]),
            sampler=sampler_for(trial_cfg, d),
            label=d.get("label"),
        )

    def to_dict(self) -> dict:
        return asdict(self)


def simulated_spec(
    family: str,
    model: dict,
    *,
    design: str = "stepped_wedge",
    covariates: list[str] | tuple = (),
    sampler: dict | None = None,
    outcome: str = "y",
    better: str | None = None,
) -> ModelSpec:
    """The spec of one ``models:`` entry fitted to simulated cells of one outcome: built, like any
    other, from a validated trial config (:func:`qialign.config.synthetic_trial`)."""
    settings = {"covariates": list(covariates), **({"sampler": sampler} if sampler else {})}
    out = {"family": family, **({"better": better} if better else {})}
    trial = synthetic_trial(design, {outcome: out}, [model], **settings)
    return ModelSpec.from_config(trial["models"][0], outcome, trial["outcomes"][outcome], trial)
