"""The simulation spec: its defaults (``DEFAULT_SPEC``, ``OUTCOME_DEFAULTS``), validation and
file format. Unknown keys are errors; ``resolve_spec`` fills every default."""

import copy
from pathlib import Path
from typing import Any

import yaml

from qialign.errors import QialignError


class SpecError(QialignError, ValueError):
    """A simulation spec that cannot be simulated (printed by the CLI without a traceback)."""


DESIGNS = ("stepped_wedge", "controlled_before_after", "interrupted_time_series")
LINKS = {
    "gaussian": "identity",
    "lognormal": "log",
    "bernoulli": "logit",
    "poisson": "log",
    "negative_binomial": "log",
}

DEFAULT_SPEC: dict[str, Any] = {
    "seed": 1,
    "design": "stepped_wedge",
    "note": "SYNTHETIC data simulated by qialign.simulate; no real patients or staff.",
    "periods": 16,
    "clusters_per_site": [4, 3],
    "cluster_prefix": "W",
    "site_prefix": "H",
    "schedule": {
        "starts": None,  # explicit start period per cluster (null = never starts)
        "baseline": 2,  # stepped wedge: periods before the first start
        "every": 2,  # stepped wedge: periods between steps
        "per_step": 1,  # stepped wedge: clusters starting at each step
        "start": None,  # CBA / ITS: common start period (default periods // 2 + 1)
        "controls": None,  # CBA: number of never-starting clusters, the last ones (default J // 2)
        "randomise_order": False,
    },
    "write_alignment": False,
    # bernoulli outcomes summed per cluster-period (events beside n in cluster_periods.csv) and no
    # patient rows: an aggregated trial (its config declares them binomial)
    "aggregate": False,
    "patients": {
        "per_period": 100.0,
        "sd_log_cluster_size": 0.2,
        "age": {"mean": 75.0, "sd": 12.0, "min": 18, "max": 105},
        "comorbidity": {"mean": 2.0, "max": 10},
        "mean_los": 6.0,
        "sd_log_bed_days": 0.1,
    },
    "alignment": {"sd_priority": 1.0, "misalignment": [0.2, 1.5], "wave_shift_sd": 0.1},
    "survey": {
        "enabled": True,
        "waves": 2,
        "roles": {
            "clinical": {"doctor": [2, 4], "nurse": [4, 8], "ahp": [2, 3]},
            "managerial": {"ward_manager": [1, 2], "matron": [1, 2], "service_manager": [1, 2]},
        },
        "domains": {"patient_safety": 4, "patient_flow": 3, "workload": 4, "learning": 3},
        "reverse": [],
        "sd_respondent": 0.5,
        "discrimination": [1.0, 2.5],
        "thresholds": [-2.0, -0.75, 0.5, 1.75],
        "sd_threshold": 0.3,
        "missing_rate": 0.0,
    },
    "fidelity": {"enabled": True, "mean": 0.6, "sd_cluster": 0.8, "sd_noise": 0.5},
    "outcomes": {"y": {"family": "bernoulli", "baseline": 0.25}},
}

OUTCOME_DEFAULTS: dict[str, Any] = {
    "family": "bernoulli",
    "level": "patient",  # patient | cluster_period (counts with an exposure)
    "baseline": None,  # natural scale at period 1: probability, median, mean or rate per `per`
    "intercept": None,  # link-scale mu; overrides baseline
    "trend": {"type": "linear", "slope": 0.0, "amplitude": 0.0, "cycle": 12.0, "values": None},
    "treatment_effect": 0.0,
    "alignment_main": 0.0,  # baseline difference per SD of alignment (link scale)
    "alignment_interaction": 0.0,
    "fidelity_interaction": 0.0,
    "sd_treatment": 0.1,
    "sd_site": 0.1,
    "sd_cluster": 0.2,
    "sd_cluster_period": 0.1,
    "cluster_period_structure": "exchangeable",  # exchangeable | ar1
    "rho": 0.0,
    "exposure_shape": "step",  # step | ramp | profile
    "ramp_length": 3,
    # profile: the link-scale effect at exposure times 1, 2, ... (later ones: the last value);
    # treatment_effect is then their mean over the trial's exposure times (its TATE)
    "exposure_effects": None,
    "betas": {"age": 0.0, "comorbidity": 0.0},
    "sigma": 1.0,
    "phi": 10.0,
    "exposure": "bed_days",
    "per": 1000.0,
    "missing_rate": 0.0,
    "decimals": None,
}
TRUTH_KEYS = (
    "level treatment_effect alignment_main alignment_interaction fidelity_interaction baseline sd_site"
    " sd_cluster"
    " sd_cluster_period cluster_period_structure sd_treatment exposure_shape"
).split()
BASELINES = {"gaussian": 0.0, "lognormal": 1.0, "bernoulli": 0.25, "poisson": 1.0}
_REPLACED = {"roles", "domains", "outcomes"}


def _merge(default: dict, given: dict | None, where: str = "") -> dict:
    out = copy.deepcopy(default)
    for key, value in (given or {}).items():
        if key not in default:
            raise SpecError(f"unknown simulation spec key '{where}{key}'")
        if isinstance(default[key], dict) and key not in _REPLACED:
            out[key] = _merge(default[key], value, f"{where}{key}.")
        else:
            out[key] = copy.deepcopy(value)
    return out


def resolve_spec(spec: dict) -> dict:
    """Fill every default into ``spec`` and validate it; unknown keys are errors."""
    out = _merge(DEFAULT_SPEC, spec)
    if out["design"] not in DESIGNS:
        raise SpecError(f"design must be one of {DESIGNS}, got {out['design']!r}")
    outcomes = {}
    for name, given in out["outcomes"].items():
        o = _merge(OUTCOME_DEFAULTS, given, f"outcomes.{name}.")
        family = o["family"]
        if family not in LINKS:
            raise SpecError(f"outcomes.{name}.family must be one of {list(LINKS)}")
        if o["level"] not in ("patient", "cluster_period"):
            raise SpecError(f"outcomes.{name}.level must be patient or cluster_period")
        counts = family in ("poisson", "negative_binomial")
        if o["level"] == "cluster_period" and (not counts or any(o["betas"].values())):
            raise SpecError(f"outcomes.{name}: cluster_period outcomes are counts without betas")
        if o["baseline"] is None and o["intercept"] is None:
            o["baseline"] = BASELINES.get(family, 1.0)
        if o["trend"]["type"] not in ("none", "linear", "nonlinear", "vector"):
            raise SpecError(f"outcomes.{name}.trend.type must be none|linear|nonlinear|vector")
        if o["cluster_period_structure"] not in ("exchangeable", "ar1") or abs(o["rho"]) >= 1:
            raise SpecError(f"outcomes.{name}: cluster_period_structure exchangeable|ar1, |rho|<1")
        if o["exposure_shape"] not in ("step", "ramp", "profile"):
            raise SpecError(f"outcomes.{name}.exposure_shape must be step, ramp or profile")
        if (o["exposure_shape"] == "profile") != bool(o["exposure_effects"]):
            raise SpecError(f"outcomes.{name}: exposure_effects (a list) goes with exposure_shape profile")
        if o["exposure_effects"] is None:  # unused: left out of the resolved spec (and truth.json)
            del o["exposure_effects"]
        if o["fidelity_interaction"] and not out["fidelity"]["enabled"]:
            raise SpecError(f"outcomes.{name}.fidelity_interaction needs fidelity.enabled")
        if out["aggregate"] and (family != "bernoulli" or any(o["betas"].values()) or o["missing_rate"]):
            raise SpecError(
                f"outcomes.{name}: aggregate: true sums bernoulli outcomes without betas or missing values"
            )
        outcomes[name] = o
    out["outcomes"] = outcomes
    return out


def load_spec(spec_path: Path) -> dict:
    """Read a simulation spec (YAML mapping)."""
    spec = yaml.safe_load(Path(spec_path).read_text()) or {}
    if not isinstance(spec, dict):
        raise SpecError(f"{spec_path}: a simulation spec must be a YAML mapping")
    return spec
