"""Progress lines: what runs, how far, how long it should take; on the terminal under the workflow."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from qialign import progress


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_duration_words():
    assert [progress.duration(s) for s in (0.4, 42, 89.6, 185, 3725)] == [
        "0 s", "42 s", "1 min 30 s", "3 min 5 s", "1 h 2 min",
    ]  # fmt: skip


def test_a_step_learns_its_time_and_quotes_it_next_run(in_tmp, capsys):
    key = ("trial_a", "mortality", "primary")
    assert progress.expected("fit", key) == "no earlier run on this machine to time it by"
    with progress.timed_step("fit", key):
        pass
    record = json.loads((in_tmp / progress.TIMINGS / "fit" / "trial_a__mortality__primary.json").read_text())
    assert 0 <= record["seconds"] < 1
    out = capsys.readouterr().out.splitlines()
    assert "▶ fit trial_a / mortality / primary: started; no earlier run" in out[0]
    assert "✓ fit trial_a / mortality / primary: done in 0 s" in out[1]
    assert progress.expected("fit", key) == "expected about 0 s (its last run here)"
    # another fit with no record of its own quotes the median of the step's records
    for name, seconds in (("b", 10), ("c", 30), ("d", 200)):
        (in_tmp / progress.TIMINGS / "fit" / f"{name}.json").write_text(json.dumps({"seconds": seconds}))
    assert progress.expected("fit", ("other", "y", "m")) == "expected about 20 s (a typical fit here)"


def test_a_failed_step_says_so_and_records_nothing(in_tmp, capsys):
    with pytest.raises(ValueError), progress.timed_step("crosscheck", ("t", "y")):
        raise ValueError("boom")
    assert "✗ crosscheck t / y: failed after 0 s" in capsys.readouterr().out
    assert not (in_tmp / progress.TIMINGS / "crosscheck").exists()


def test_countdown_counts_and_estimates_what_is_left(monkeypatch, capsys):
    clock = iter([100.0, 104.0, 108.0, 112.0, 116.0])
    monkeypatch.setattr(progress.time, "perf_counter", lambda: next(clock))
    count = progress.Countdown(4, "replicate")
    assert count.tick("#7") == "replicate 1/4: #7; about 12 s left"
    assert count.tick() == "replicate 2/4; about 8 s left"
    count.tick()
    assert count.tick() == "replicate 4/4"


def test_the_terminal_descriptor_gets_the_lines_and_the_log_keeps_them(tmp_path):
    """As the workflow's rules run a step: ``qialign --progress-fd 3 ... 3>&2 > log 2>&1``."""
    code = "from qialign import progress; progress.attach_terminal(3); progress.say('stage one')"
    log = tmp_path / "step.log"
    run = subprocess.run(
        ["bash", "-c", f'{sys.executable} -c "{code}" 3>&2 > {log} 2>&1'], capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr
    assert run.stderr.strip().endswith("stage one") and run.stdout == ""
    assert log.read_text().strip().endswith("stage one")
    # by hand, without the descriptor, nothing breaks and nothing is written twice
    code = "from qialign import progress; progress.attach_terminal(3); progress.say('alone')"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0 and run.stdout.count("alone") == 1 and "alone" not in run.stderr
