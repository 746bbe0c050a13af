"""The synthesis block: schema defaults, and the checks against the trials it names (one screen,
no traceback, through the CLI as well)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from qialign.config import load_trials
from qialign.errors import QialignError
from qialign.steps.synthesis import load_block
from qialign.synthesis.config import (
    check_against_trials,
    load_synthesis,
    synthesis_defaults,
    validate_block,
    workflow_synthesis,
)

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ("headsup_synthetic", "discharge_synthetic", "sepsis_synthetic", "sicily_its")


@pytest.fixture(scope="module")
def trials() -> dict:
    return load_trials(ROOT / "config" / "trials", list(SHIPPED))


def _block(**trials) -> dict:
    return validate_block({"trials": {t: {"outcome": o} for t, o in trials.items()}, "scale": "log_or"})


def test_the_shipped_block_checks_and_fills_models_and_direction(trials):
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    block = load_synthesis(config, trials)
    assert list(block["trials"]) == ["headsup_synthetic", "discharge_synthetic", "sepsis_synthetic"]
    assert {p["model"] for p in block["trials"].values()} == {"hh"}
    assert block["better"] == "lower" and block["alignment"] == "common"
    assert block["predict_at"] == synthesis_defaults()["predict_at"] == [0.1, 0.5, 0.9]


def test_one_trial_refuses_with_a_clear_message(trials):
    with pytest.raises(
        QialignError, match=r"synthesis/trials names 1 trial \(headsup_synthetic\).*at least two"
    ):
        check_against_trials(_block(headsup_synthetic="excess_los"), trials)


def test_every_misfit_is_named_on_one_screen(trials):
    block = _block(headsup_synthetic="los_days", discharge_synthetic="nope", sicily_its="aces", absent="y")
    with pytest.raises(QialignError) as err:
        check_against_trials(block, trials)
    text = str(err.value)
    assert (
        "synthesis/trials/headsup_synthetic/outcome: los_days is lognormal, which has no log odds ratio"
        in text
    )
    assert (
        "synthesis/trials/discharge_synthetic/outcome: 'nope' is not an outcome of discharge_synthetic"
        in text
    )
    assert "synthesis/trials/sicily_its: sicily_its scores no alignment" in text
    assert "synthesis/trials/absent: 'absent' is not in the trials list" in text


def test_outcomes_that_disagree_on_better_are_refused(trials):
    block = validate_block(
        {
            "trials": {"headsup_synthetic": {"outcome": "incidents"}, "sicily_its": {"outcome": "aces"}},
            "scale": "log_rr",
        }
    )
    with pytest.raises(QialignError, match="disagree on which direction is better"):
        check_against_trials(block, trials)


def test_schema_errors_name_the_key():
    with pytest.raises(QialignError, match=r"synthesis/scale: 'log_hr' is not one of"):
        validate_block({"trials": {"a": {"outcome": "y"}}, "scale": "log_hr"})


def test_the_step_refuses_one_trial_before_reading_results(tmp_path):
    """The synthesis step's own loader (the CLI prints its QialignError without a traceback)."""
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    config["synthesis"]["trials"] = {"headsup_synthetic": {"outcome": "excess_los"}}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(
        QialignError, match=f"(?s){path}: the synthesis block does not fit.*at least two trials"
    ):
        load_block(path, ROOT / "config" / "trials")


def test_a_run_of_one_trial_skips_the_synthesis_and_says_so(trials):
    """``snakemake --config 'trials=["headsup_synthetic"]'`` runs that trial alone."""
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    block, note = workflow_synthesis({**config, "trials": ["headsup_synthetic"]}, trials)
    assert (
        block is None
        and note == "synthesis skipped: this run's trials leave out discharge_synthetic, sepsis_synthetic"
    )
    block, note = workflow_synthesis(config, trials)
    assert block["scale"] == "log_or" and note == ""
