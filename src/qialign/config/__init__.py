"""Trial configuration: the schema (the one home of every default), loading and validation, and a
frozen typed view.

- :mod:`.schema`: ``trial.schema.yaml``, :func:`fill_defaults` / :func:`schema_defaults` of a part;
- :mod:`.validate`: :func:`load_trial_config`, :func:`load_trials` (one-screen errors);
- :mod:`.typed`: :class:`TrialConfig` and its parts, :func:`trial_config` (built once per trial).
"""

from qialign.config.schema import SCHEMA_PATH, fill_defaults, schema_defaults, trial_schema
from qialign.config.typed import TrialConfig, trial_config
from qialign.config.validate import load_trial_config, load_trials, synthetic_trial, validate_trial_config
from qialign.errors import QialignError
from qialign.families import POWER_FAMILIES


def models_for(cfg: dict, outcome: str) -> list[dict]:
    """The model variants fitted for one outcome (its own list of ids, else all)."""
    wanted = cfg["outcomes"][outcome].get("models")
    return [m for m in cfg["models"] if wanted is None or m["id"] in wanted]


def power_outcome(cfg: dict) -> str | None:
    """The configured power outcome, else the first binary or continuous outcome (None if none)."""
    name = cfg["power"].get("outcome")
    if name is not None:
        if name not in cfg["outcomes"]:
            raise QialignError(f"{cfg['id']}: power/outcome '{name}' is not an outcome of the trial")
        if cfg["outcomes"][name]["family"] not in POWER_FAMILIES:
            raise QialignError(
                f"{cfg['id']}: power/outcome '{name}' is {cfg['outcomes'][name]['family']}; analytic power "
                f"covers {', '.join(POWER_FAMILIES)} outcomes"
            )
        return name
    return next((o for o, c in cfg["outcomes"].items() if c["family"] in POWER_FAMILIES), None)


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
    "power_outcome",
    "sampler_for",
    "schema_defaults",
    "synthetic_trial",
    "trial_config",
    "trial_schema",
    "validate_trial_config",
]
