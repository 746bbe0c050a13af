# Config validation and input functions. No statistics here.
import sys
from pathlib import Path

from snakemake.utils import validate

from qialign.config import load_trials, models_for, power_outcome
from qialign.errors import QialignError
from qialign.results import FIT_FILES
from qialign.robustness.battery import battery, battery_outcomes
from qialign.robustness.files import ROBUSTNESS_DIR, ROBUSTNESS_FILES
from qialign.sources import put_environment_first_on_path
from qialign.sources import source_hash as package_source_hash
from qialign.synthesis.config import workflow_synthesis
from qialign.synthesis.files import trial_files

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

try:  # the synthesis block (None without one) checked against the trials it names
    SYNTHESIS, note = workflow_synthesis(config, TRIAL_CFG)
except QialignError as exc:
    sys.exit(f"qialign: {exc}")
if note:
    print(f"qialign: {note}", file=sys.stderr)


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
        for name, model in cfg["models"].items()
        for i in range(int(model["chunks"]))
    ]


def synthesis_inputs(wildcards):
    """Every file the synthesis reads: each pooled trial's fit posterior, record, counterfactual
    (which wards were treated) and alignment scores (rules/synthesis.smk)."""
    return [
        str(path)
        for trial, pick in SYNTHESIS["trials"].items()
        for path in trial_files(
            "results", trial, pick["outcome"], pick["model"]
        ).values()
    ]


def synthesis_targets():
    """The synthesis page when the config has a synthesis block (in `all`)."""
    return ["reports/synthesis/report.html"] if SYNTHESIS else []


# the robustness battery (rules/robustness.smk): variant model ids per trial and battery outcome

try:  # one screen naming the trial and key, never a traceback
    ROBUSTNESS = {
        t: {
            o: [v.id for v in battery(TRIAL_CFG[t], o)[0]]
            for o in battery_outcomes(TRIAL_CFG[t])
        }
        for t in TRIALS
    }
except QialignError as exc:
    sys.exit(f"qialign: {exc}")

ROBUSTNESS_OUTPUTS = {
    key: f"results/{{trial}}/{{outcome}}/{ROBUSTNESS_DIR}/{name}"
    for key, name in ROBUSTNESS_FILES.items()
}


def variant_fit_outputs(trial, name, outcome=None):
    """One file per robustness variant fit of a trial (or of one outcome)."""
    outcomes = [outcome] if outcome else list(ROBUSTNESS[trial])
    return [
        f"results/{trial}/{o}/{m}/{name}"
        for o in outcomes
        for m in ROBUSTNESS[trial][o]
    ]


def robustness_outputs(trial, key="verdict"):
    """The robustness files of a trial's battery outcomes (none when robustness is off)."""
    return [
        ROBUSTNESS_OUTPUTS[key].format(trial=trial, outcome=o)
        for o in ROBUSTNESS[trial]
    ]


def robustness_logs(trial):
    """The logs of the battery's fits and steps, for links in the report."""
    logs = [f"results/{trial}/logs/robustness_{o}.log" for o in ROBUSTNESS[trial]]
    return logs + [
        f"results/{trial}/logs/fit_{o}_{m}.log"
        for o in ROBUSTNESS[trial]
        for m in ROBUSTNESS[trial][o]
    ]


def primary_fit(wc, name):
    """One file of the primary fit (first model) of the wildcards' outcome."""
    return (
        f"results/{wc.trial}/{wc.outcome}/{model_ids(wc.trial, wc.outcome)[0]}/{name}"
    )
