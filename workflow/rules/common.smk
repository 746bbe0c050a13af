# Config validation and input functions. No statistics here.
import sys
from pathlib import Path

from snakemake.utils import validate

from qialign.config import load_trials, models_for
from qialign.errors import QialignError
from qialign.results import FIT_FILES
from qialign.sources import put_environment_first_on_path
from qialign.sources import source_hash as package_source_hash

# the rules run `qialign` from the environment that runs Snakemake, activated or not
put_environment_first_on_path()

validate(config, schema="../schemas/config.schema.yaml")

TRIALS = list(config["trials"])


def trial_config_path(trial):
    return f"{config['trials_dir']}/{trial}.yaml"


try:  # one screen naming the file and key, never a traceback or a schema dump
    TRIAL_CFG = load_trials(config["trials_dir"], TRIALS)
except QialignError as exc:
    sys.exit(f"qialign: {exc}")


wildcard_constraints:
    trial="|".join(TRIALS),
    outcome="[A-Za-z0-9_]+",
    model="[A-Za-z][A-Za-z0-9_]*",


def source_hash(*entries):
    """Hash of the package files the step modules ``entries`` run (their import closure), in
    params so that an edit to any of them re-runs the step (qialign.sources)."""
    return package_source_hash(Path(workflow.basedir) / "src" / "qialign", *entries)


def trial_inputs(wildcards):
    """The trial's config file and every data table it names."""
    cfg = TRIAL_CFG[wildcards.trial]
    return [trial_config_path(wildcards.trial), *cfg["data"].values()]


def power_cells(trial):
    """The cells of the outcome the analytic power is computed for (none if no outcome fits)."""
    from qialign.steps.power import power_outcome

    outcome = power_outcome(TRIAL_CFG[trial])
    return [f"results/{trial}/{outcome}/cells.parquet"] if outcome else []


def joint_survey(trial):
    """The survey file, an input of the fits only when alignment.propagation is joint."""
    cfg = TRIAL_CFG[trial]
    return [cfg["data"]["survey"]] if cfg["alignment"]["propagation"] == "joint" else []


def outcomes_of(trial):
    return list(TRIAL_CFG[trial]["outcomes"])


def model_ids(trial, outcome):
    """Ids of the models fitted for one outcome (its own list, else all)."""
    return [m["id"] for m in models_for(TRIAL_CFG[trial], outcome)]


# the fit rule's named outputs: one fit's folder holds qialign.results.FIT_FILES
FIT_OUTPUTS = {
    key: f"results/{{trial}}/{{outcome}}/{{model}}/{name}"
    for key, name in FIT_FILES.items()
}


def fit_outputs(trial, name, outcome=None):
    """One file per fit (outcome x model) of a trial, or of one outcome."""
    outcomes = [outcome] if outcome else outcomes_of(trial)
    return [
        f"results/{trial}/{o}/{m}/{name}" for o in outcomes for m in model_ids(trial, o)
    ]


def trial_logs(trial):
    """The log of every step of a trial, for links in its report."""
    logs = [
        f"results/{trial}/logs/{s}.log" for s in ("validate", "alignment", "collect")
    ]
    for o in outcomes_of(trial):
        logs += [
            f"results/{trial}/logs/{s}_{o}.log"
            for s in ("prepare", "crosscheck", "compare")
        ]
        logs += [f"results/{trial}/logs/fit_{o}_{m}.log" for m in model_ids(trial, o)]
    return logs


STUDIES = ("sbc", "power_sim")  # replicated simulate-and-fit studies (rules/sbc.smk)


def study_chunks(study):
    """The chunk files of every model of one study (config/<study>.yaml says which and how many)."""
    from qialign.studies.sbc_config import load_sbc_config

    try:
        cfg = load_sbc_config(f"config/{study}.yaml")
    except QialignError as exc:
        sys.exit(f"qialign: {exc}")
    return [
        f"results/{study}/{name}/chunk_{i}.csv"
        for name in cfg["models"]
        for i in range(int(cfg["chunks"]))
    ]
