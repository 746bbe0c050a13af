"""Trial configuration: load YAML, validate it against the schema (:mod:`qialign.config.schema`),
which fills its defaults, and check what the schema cannot express; every problem on one screen."""

from __future__ import annotations

import copy
import difflib
from pathlib import Path

import jsonschema
import yaml

from qialign.config.schema import default_filling_validator, trial_schema
from qialign.errors import QialignError
from qialign.waves import wave_label


def validate_trial_config(raw: dict, source: str = "<config>") -> dict:
    """Validate ``raw`` and return a copy with defaults filled; raise QialignError listing every problem."""
    if raw is None:
        raise QialignError(f"{source}: the file is empty; expected a YAML mapping of trial settings.")
    if not isinstance(raw, dict):
        raise QialignError(f"{source}: expected a YAML mapping of trial settings, got {type(raw).__name__}.")
    cfg = copy.deepcopy(raw)
    _wave_labels(cfg)
    validator = default_filling_validator()(trial_schema())
    errors = sorted(validator.iter_errors(cfg), key=lambda e: list(e.absolute_path))
    if errors:
        lines = [f"{source}: {len(errors)} problem(s) in the trial configuration:"]
        for err in errors:
            where = "/".join(str(p) for p in err.absolute_path) or "(top level)"
            lines.append(f"- {where}: {_message(err)}")
        raise QialignError("\n".join(lines))
    _roles_as_text(cfg)
    _propagation_default(raw, cfg)
    _check_cross_references(cfg, source)
    return cfg


def _propagation_default(raw: dict, cfg: dict) -> None:
    """``alignment.propagation`` left unset: ``joint`` for the plain latent survey score (source:
    survey, method: latent, score: plain), where it is the only mode that estimates γ rather than
    R γ (the schema's description); the schema's default (``plugin``) otherwise. In place."""
    given = raw.get("alignment") if isinstance(raw.get("alignment"), dict) else {}
    al = cfg["alignment"]
    plain_latent = (al["source"], al["method"], al["score"]) == ("survey", "latent", "plain")
    if "propagation" not in given and plain_latent:
        al["propagation"] = "joint"


def _roles_as_text(cfg: dict) -> None:
    """Role codes as the survey's role column reads them: text (integer codes 1 -> '1'), in place."""
    roles = cfg["alignment"].get("roles")
    for group, values in (roles or {}).items():
        roles[group] = [str(int(v)) if isinstance(v, int | float) else v for v in values]


def _wave_labels(cfg: dict) -> None:
    """``alignment.wave`` / ``alignment.waves`` as text labels (:func:`qialign.waves.wave_label`), in
    place: a YAML date (``2024-01-31``) is the label of that day, an integer its digits."""
    al = cfg.get("alignment")
    if not isinstance(al, dict):
        return
    if al.get("wave") is not None and not isinstance(al["wave"], (list, dict, bool)):
        al["wave"] = wave_label(al["wave"])
    if isinstance(al.get("waves"), list):
        al["waves"] = [w if isinstance(w, (list, dict, bool)) else wave_label(w) for w in al["waves"]]


def _message(err: jsonschema.ValidationError) -> str:
    """One line per schema error: unknown keys with the closest known key, never the schema."""
    if err.validator == "additionalProperties" and isinstance(err.instance, dict):
        known = list(err.schema.get("properties", {}))
        parts = []
        for key in sorted(set(err.instance) - set(known)):
            close = difflib.get_close_matches(key, known, n=1)
            parts.append(f"unknown key '{key}'" + (f" (did you mean '{close[0]}'?)" if close else ""))
        return "; ".join(parts) + f"; expected one of: {', '.join(known)}"
    if err.validator in ("oneOf", "anyOf") or len(err.message) > 300:
        return f"{repr(err.instance)[:80]} does not match what is expected here ({err.validator})"
    return err.message


def load_trials(trials_dir: str | Path, ids: list[str]) -> dict[str, dict]:
    """Every listed trial's validated config (the workflow's); one QialignError naming every
    problem: a missing file, a bad file, an id that differs from its file name."""
    configs, problems = {}, []
    for trial in ids:
        path = Path(trials_dir) / f"{trial}.yaml"
        try:
            cfg = load_trial_config(path)
        except QialignError as exc:
            listed = f"config.yaml lists trial '{trial}' but " if not path.is_file() else ""
            problems.append(f"{listed}{exc}")
            continue
        if cfg["id"] != trial:
            problems.append(f"{path}: id '{cfg['id']}' should equal the file name '{trial}'.")
        configs[trial] = cfg
    if problems:
        raise QialignError("\n".join(problems))
    return configs


def _check_cross_references(cfg: dict, source: str) -> None:
    """Checks the schema cannot express: model ids unique and referenced ids defined."""
    ids = [m["id"] for m in cfg["models"]]
    problems = [f"- models: id '{i}' is used more than once" for i in sorted(set(ids)) if ids.count(i) > 1]
    for name, out in cfg["outcomes"].items():
        for mid in out.get("models") or ():
            if mid not in ids:
                problems.append(f"- outcomes/{name}/models: '{mid}' is not a model id ({', '.join(ids)})")
        if "exposure" in out and out["family"] not in ("poisson", "negative_binomial"):
            problems.append(f"- outcomes/{name}/exposure: only count families take an exposure")
    for name in cfg["covariate_bins"]:
        if name not in cfg["covariates"]:
            problems.append(
                f"- covariate_bins/{name}: not one of the covariates ({', '.join(cfg['covariates'])})"
            )
    for name, cuts in cfg["covariate_bins"].items():
        if list(cuts) != sorted(set(cuts)):
            problems.append(f"- covariate_bins/{name}: cut points must be strictly increasing, got {cuts}")
    if not {"patients", "cluster_periods"} & set(cfg["data"]):
        problems.append("- data: give a patients table, a cluster_periods table, or both")
    al = cfg["alignment"]
    if al["propagation"] != "plugin" and not (al["source"] == "survey" and al["method"] == "latent"):
        problems.append(
            f"- alignment/propagation: '{al['propagation']}' needs posterior draws of alignment, i.e. "
            "alignment.source: survey with method: latent; use plugin otherwise"
        )
    if al["score"] == "debiased" and (al["source"] != "survey" or al["propagation"] != "plugin"):
        problems.append(
            "- alignment/score: 'debiased' is the survey score with each gap's sampling (descriptive) "
            "or posterior (latent) variance removed: it needs alignment.source: survey and propagation: "
            "plugin (draws and joint carry the posterior of alignment itself); use plain otherwise"
        )
    roles = al.get("roles") or {}
    managerial = roles.get("managerial") or ()
    both = [g for g in roles.get("clinical") or () if g in managerial]
    if both:
        problems.append(
            f"- alignment/roles: {', '.join(repr(g) for g in dict.fromkeys(both))} listed as both "
            "clinical and managerial; each staff group belongs to one role"
        )
    listed = al.get("waves")
    if listed is not None and al["wave"] is not None and al["wave"] not in listed:
        problems.append(
            f"- alignment/wave: '{al['wave']}' is not one of alignment.waves ({', '.join(listed)})"
        )
    if al["source"] == "survey":
        for key in ("roles", "domains"):
            if key not in al:
                problems.append(f"- alignment/{key}: required when alignment.source is survey")
        if "survey" not in cfg["data"]:
            problems.append("- data/survey: required when alignment.source is survey")
    if problems:
        raise QialignError(f"{source}: problem(s) in the trial configuration:\n" + "\n".join(problems))


def load_trial_config(path: str | Path) -> dict:
    """Read, validate and default-fill one trial config file."""
    path = Path(path)
    if not path.is_file():
        raise QialignError(f"{path}: trial config not found.")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise QialignError(f"{path}: not valid YAML: {exc}") from None
    return validate_trial_config(raw, source=str(path))


#: what ``synthetic_trial`` writes for the data paths: simulated cells are never read from files
SIMULATED = "<simulated>"


def synthetic_trial(design: str, outcomes: dict[str, dict], models: list[dict], **settings) -> dict:
    """A validated (schema-filled) config of a simulated trial, for fitting simulated cells (SBC,
    benchmarks, tests): ``settings`` are further top-level keys (``covariates``, ``sampler``, ...);
    the data paths are placeholders that nothing reads."""
    data = {"clusters": SIMULATED, "cluster_periods": SIMULATED}
    raw = {"id": "simulated", "design": design, "data": data, "seed": 0, **settings}
    return validate_trial_config({**raw, "outcomes": outcomes, "models": models}, source="simulated trial")
