"""Trial configuration: the schema (the one home of every default), loading and validation, and a
frozen typed view.

- :mod:`.schema`: ``trial.schema.yaml``, :func:`fill_defaults` / :func:`schema_defaults` of a part;
- :mod:`.validate`: :func:`load_trial_config`, :func:`load_trials` (one-screen errors);
- :mod:`.typed`: :class:`TrialConfig` and its parts, :func:`trial_config` (built once per trial).
"""

from qialign.config.schema import SCHEMA_PATH, fill_defaults, schema_defaults, trial_schema
from qialign.config.typed import TrialConfig, trial_config
from qialign.config.validate import load_trial_config, load_trials, synthetic_trial, validate_trial_config


def models_for(cfg: dict, outcome: str) -> list[dict]:
    """The model variants fitted for one outcome (its own list of ids, else all)."""
    wanted = cfg["outcomes"][outcome].get("models")
    return [m for m in cfg["models"] if wanted is None or m["id"] in wanted]


def sampler_for(cfg: dict, model: dict) -> dict:
    """The trial's sampler settings with the model's overrides applied (both schema-filled)."""
    return {**cfg["sampler"], **model["sampler"]}


__all__ = [
    "SCHEMA_PATH",
    "TrialConfig",
    "fill_defaults",
    "load_trial_config",
    "load_trials",
    "models_for",
    "sampler_for",
    "schema_defaults",
    "synthetic_trial",
    "trial_config",
    "trial_schema",
    "validate_trial_config",
]
