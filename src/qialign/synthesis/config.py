"""The ``synthesis:`` block of config/config.yaml: validated against ``synthesis.schema.yaml`` (the
one home of its defaults) and checked against the trials it names; every problem on one screen.

Rules the schema cannot say: at least two trials (one trial has nothing to pool); every named trial
is listed under ``trials``, its outcome exists and the model is fitted for it; every outcome's
family gives the common scale (log_or: bernoulli / binomial; log_rr: poisson / negative binomial;
smd: gaussian / lognormal); every outcome has the same ``better`` direction; every trial scores
alignment.
"""

from __future__ import annotations

import copy
from functools import cache
from importlib.resources import files
from pathlib import Path

import yaml

from qialign.config import models_for
from qialign.config.schema import default_filling_validator
from qialign.errors import QialignError
from qialign.families import FAMILIES
from qialign.results import SMD

SCHEMA_PATH = Path(str(files("qialign.synthesis") / "synthesis.schema.yaml"))
#: common effect scale -> the family kinds whose link-scale effect it is (smd: effect / sigma)
SCALE_KINDS = {"log_or": "binary", "log_rr": "count", "smd": "continuous"}
#: common effect scale -> the scale name of its estimates.csv rows
SCALE_NAMES = {
    "log_or": FAMILIES["bernoulli"].link_scale,
    "log_rr": FAMILIES["poisson"].link_scale,
    "smd": SMD,
}
SCALE_PHRASES = {
    "log_or": "log odds ratio",
    "log_rr": "log rate ratio",
    "smd": "standardised mean difference",
}


@cache
def _schema() -> dict:
    return yaml.safe_load(SCHEMA_PATH.read_text())


def synthesis_defaults() -> dict:
    """Every default of the block (``trials`` and ``scale`` have none)."""
    out = {"trials": {"_": {"outcome": "_"}}, "scale": "log_or"}
    default_filling_validator()(_schema()).validate(out)
    return {k: v for k, v in out.items() if k not in ("trials", "scale")}


def validate_block(raw, source: str = "config.yaml") -> dict:
    """The block validated, defaults filled (a copy); QialignError listing every schema problem."""
    block = copy.deepcopy(raw)
    if not isinstance(block, dict):
        raise QialignError(f"{source}: synthesis must be a mapping with keys trials and scale")
    errors = sorted(default_filling_validator()(_schema()).iter_errors(block), key=lambda e: list(e.path))
    if errors:
        lines = [f"{source}: {len(errors)} problem(s) in the synthesis block:"]
        lines += [f"- synthesis/{'/'.join(map(str, e.path)) or '(top level)'}: {e.message}" for e in errors]
        raise QialignError("\n".join(lines))
    return block


def check_against_trials(block: dict, trials: dict[str, dict], source: str = "config.yaml") -> dict:
    """``block`` (validated) with each trial's model id filled in; QialignError naming every
    trial / key that does not fit (module docstring)."""
    problems, out = [], copy.deepcopy(block)
    names = list(block["trials"])
    if len(names) < 2:
        problems.append(
            f"synthesis/trials names {len(names)} trial ({', '.join(names)}): a synthesis pools at "
            "least two trials; add another trial or remove the synthesis block"
        )
    kind = SCALE_KINDS[block["scale"]]
    better = {}
    for trial, pick in block["trials"].items():
        where = f"synthesis/trials/{trial}"
        if trial not in trials:
            problems.append(f"{where}: '{trial}' is not in the trials list ({', '.join(trials)})")
            continue
        cfg = trials[trial]
        outcome = cfg["outcomes"].get(pick["outcome"])
        if outcome is None:
            known = ", ".join(cfg["outcomes"])
            problems.append(f"{where}/outcome: '{pick['outcome']}' is not an outcome of {trial} ({known})")
            continue
        fitted = [m["id"] for m in models_for(cfg, pick["outcome"])]
        model = pick.get("model", fitted[0])
        if model not in fitted:
            problems.append(
                f"{where}/model: '{model}' is not fitted for {pick['outcome']} ({', '.join(fitted)})"
            )
        out["trials"][trial]["model"] = model
        if FAMILIES[outcome["family"]].kind != kind:
            problems.append(
                f"{where}/outcome: {pick['outcome']} is {outcome['family']}, which has no "
                f"{SCALE_PHRASES[block['scale']]} (synthesis/scale: {block['scale']})"
            )
        if cfg["alignment"]["source"] == "none":
            problems.append(f"{where}: {trial} scores no alignment (alignment.source: none)")
        better[trial] = outcome["better"]
    if len(set(better.values())) > 1:
        problems.append(
            "synthesis/trials: the pooled outcomes disagree on which direction is better "
            f"({', '.join(f'{t}: {b}' for t, b in better.items())}); pool outcomes with one direction"
        )
    if problems:
        raise QialignError(
            f"{source}: the synthesis block does not fit the trials:\n- " + "\n- ".join(problems)
        )
    out["better"] = next(iter(better.values()))
    return out


def load_synthesis(config: dict, trials: dict[str, dict], source: str = "config.yaml") -> dict | None:
    """The checked block of a workflow config (None without one)."""
    if config.get("synthesis") is None:
        return None
    return check_against_trials(validate_block(config["synthesis"], source), trials, source)


def workflow_synthesis(config: dict, trials: dict[str, dict]) -> tuple[dict | None, str]:
    """The workflow's block and a note: None, with a note saying why, when the run's trials list
    (e.g. ``--config 'trials=[...]'``) leaves out a trial the block names, so that one trial can be
    run alone; every other problem is a QialignError (:func:`load_synthesis`)."""
    named = (config.get("synthesis") or {}).get("trials")
    left_out = sorted(set(named or {}) - set(config["trials"])) if isinstance(named, dict) else []
    if left_out:
        return None, f"synthesis skipped: this run's trials leave out {', '.join(left_out)}"
    return load_synthesis(config, trials), ""
