"""A frozen, typed view of one validated trial config (:class:`TrialConfig`).

Built once from the schema-filled mapping (:func:`qialign.config.validate.validate_trial_config`),
so every value is the user's or the schema's default: no field here has a default of its own
(``tests/test_config_defaults.py`` checks both, field by field). Lists become tuples, so a view is
immutable; optional keys the schema gives no default (``outcomes.<name>.label``) read None.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass


@dataclass(frozen=True)
class Sampler:
    """NUTS settings (``sampler``, merged with a model's ``sampler`` overrides)."""

    engine: str
    chains: int
    draws: int
    draws_min: int
    tune: int
    target_accept: float
    cores: int


@dataclass(frozen=True)
class Diagnostics:
    """Thresholds a fit must meet (``diagnostics``)."""

    r_hat_max: float
    ess_bulk_min: float
    ess_tail_min: float
    divergences_max: int
    ebfmi_min: float
    retry: bool


@dataclass(frozen=True)
class Interval:
    """How Bayesian intervals are reported: probability ``prob``, ``eti`` or ``hdi``."""

    prob: float
    kind: str


@dataclass(frozen=True)
class Report:
    suppress_below: int


@dataclass(frozen=True)
class Power:
    """Analytic power settings (``power``); ``outcome`` None = the first one that fits."""

    outcome: str | None
    effects: tuple[float, ...]
    interaction_effects: tuple[float, ...]
    icc: tuple[float, ...]
    cac: tuple[float, ...]
    iac: tuple[float, ...]
    decay: tuple[float, ...]
    df: float | None
    replicates: tuple[int, ...]
    alpha: float
    target: float


@dataclass(frozen=True)
class Scale:
    min: int
    max: int


@dataclass(frozen=True)
class LatentSampler:
    """Sampler of the graded-response measurement model (``alignment.latent``)."""

    chains: int
    draws: int
    tune: int
    target_accept: float
    cores: int
    keep: int


@dataclass(frozen=True)
class Alignment:
    """Clinical-managerial alignment (``alignment``); roles/domains are set when source is survey."""

    source: str
    roles: dict[str, tuple[str, ...]] | None
    scale: Scale
    domains: dict[str, tuple[str, ...]] | None
    reverse: tuple[str, ...]
    method: str
    waves: tuple[str, ...] | None
    wave: str | None
    propagation: str
    score: str
    draws: int
    latent: LatentSampler


@dataclass(frozen=True)
class Priors:
    """Normal(0, sd) scales on the link scale, half-normal scales for SDs (``$defs/priors``)."""

    intercept_sd: float
    trend_sd: float
    effect_sd: float
    interaction_sd: float
    beta_sd: float
    sd_site: float
    sd_cluster: float
    sd_cluster_period: float
    sd_treatment: float
    exposure_sd: float
    sigma: float
    phi_rate: float


@dataclass(frozen=True)
class ModelVariant:
    """One ``models:`` entry (``$defs/model``); ``auto`` values are resolved per outcome by
    :meth:`qialign.models.spec.ModelSpec.from_config`. ``sampler`` holds only its overrides."""

    id: str
    label: str | None
    trend: str
    spline_df: int
    exposure: str
    estimand_window: tuple[int, ...] | None
    pte_at: int | None
    ramp_periods: int
    slope_change: bool
    harmonics: int
    season_length: int
    site_effect: bool
    cluster_period: str
    random_treatment: bool
    overdispersion: str
    parametrization: str
    covariates: bool
    exclude_transition: bool
    moderators: tuple[str, ...]
    moderator_main_effects: bool
    priors: Priors
    sampler: dict[str, typing.Any]


@dataclass(frozen=True)
class Outcome:
    """One ``outcomes:`` entry; ``models`` None = every model of the trial."""

    family: str
    better: str
    label: str | None
    unit: str
    table: str | None
    exposure: str | None
    trials: str | None
    models: tuple[str, ...] | None


@dataclass(frozen=True)
class Fidelity:
    column: str


@dataclass(frozen=True)
class Robustness:
    """The robustness battery (``robustness``): variants of the primary model, permutation,
    placebo and prior-sensitivity settings."""

    enabled: bool
    outcomes: tuple[str, ...]
    aspects: tuple[str, ...]
    randomised: bool
    permutations: int
    placebo_shift: int
    sensitivity_threshold: float


@dataclass(frozen=True)
class TrialConfig:
    """One trial's settings, every default filled from the schema (see :func:`trial_config`)."""

    id: str
    title: str
    synthetic: bool
    design: str
    seed: int
    data: dict[str, str]
    columns: dict[str, typing.Any]
    periods: dict[str, str]
    outcomes: dict[str, Outcome]
    covariates: tuple[str, ...]
    covariate_bins: dict[str, tuple[float, ...]]
    alignment: Alignment
    fidelity: Fidelity
    models: tuple[ModelVariant, ...]
    sampler: Sampler
    power: Power
    diagnostics: Diagnostics
    interval: Interval
    report: Report
    robustness: Robustness

    def models_for(self, outcome: str) -> tuple[ModelVariant, ...]:
        """The model variants fitted for one outcome (its own list of ids, else all)."""
        wanted = self.outcomes[outcome].models
        return tuple(m for m in self.models if wanted is None or m.id in wanted)

    def sampler_for(self, model: ModelVariant) -> Sampler:
        """The trial's sampler settings with the model's overrides applied."""
        return dataclasses.replace(self.sampler, **model.sampler)


def trial_config(cfg: dict) -> TrialConfig:
    """The typed view of a validated (schema-filled) trial config mapping."""
    return _build(TrialConfig, cfg)


def _build(cls, mapping: dict):
    hints = typing.get_type_hints(cls)
    return cls(**{f.name: _convert(hints[f.name], mapping.get(f.name)) for f in dataclasses.fields(cls)})


def _convert(hint, value):
    """``value`` as the annotated type: dataclasses built, lists as tuples, maps converted per value."""
    if value is None:
        return None
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if isinstance(hint, types.UnionType):  # X | None
        return _convert(args[0], value)
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        return _build(hint, value)
    if origin is tuple:
        return tuple(_convert(args[0], v) for v in value)
    if origin is dict:
        return {k: _convert(args[1], v) for k, v in value.items()}
    return value
