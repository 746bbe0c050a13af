"""``qialign fit --threads N``: the scheduler's allocation is the number of cores the sampler runs on.

The real command runs in this process on the shipped Sicily ITS trial up to the sampler; nutpie's
compile and sample (or ``pymc.sample``) are replaced by recorders that stop the fit, so the test
reads the ``cores`` that actually reach the sampler.
"""

from __future__ import annotations

import nutpie
import pymc
import pytest
import yaml

from qialign.cli import main
from qialign.steps.prepare import prepare_outcome
from sim_pipeline import shipped_sicily


class _Stop(Exception):
    """Raised by the recording sampler: nothing after sampling is under test."""


@pytest.fixture(scope="module")
def sicily(tmp_path_factory) -> dict:
    """The Sicily config (its ``its`` model, sampler cores 2), prepared."""
    tmp = tmp_path_factory.mktemp("threads")
    config, _ = shipped_sicily(
        tmp / "sicily.yaml", sampler={"chains": 2, "draws": 10, "tune": 10, "cores": 2}
    )
    prepare_outcome(config, "aces", tmp / "prepared")
    return {"tmp": tmp, "config": config}


def _cores_reaching_nutpie(sicily: dict, monkeypatch, *threads: str) -> int:
    seen = {}

    def sample(compiled, **kw):
        seen.update(kw)
        raise _Stop

    monkeypatch.setattr(nutpie, "compile_pymc_model", lambda model, **kw: object())
    monkeypatch.setattr(nutpie, "sample", sample)
    tmp = sicily["tmp"]
    argv = ["fit", str(sicily["config"]), "--outcome", "aces", "--model", "its"]
    argv += [
        "--prepared",
        str(tmp / "prepared"),
        "--scores",
        str(tmp / "none.csv"),
        "--out-dir",
        str(tmp / "o"),
    ]
    with pytest.raises(_Stop):
        main([*argv, *threads])
    assert seen["chains"] == 2
    return seen["cores"]


@pytest.mark.parametrize(("threads", "cores"), [(["--threads", "1"], 1), (["--threads", "2"], 2), ([], 2)])
def test_threads_are_the_cores_nutpie_samples_on(sicily, monkeypatch, threads, cores):
    assert _cores_reaching_nutpie(sicily, monkeypatch, *threads) == cores


def test_more_threads_than_the_sampler_asks_for_do_not_add_cores(sicily, monkeypatch):
    assert _cores_reaching_nutpie(sicily, monkeypatch, "--threads", "4") == 2


def test_threads_reach_pymcs_own_sampler_too(sicily, monkeypatch):
    cfg = yaml.safe_load(sicily["config"].read_text())
    cfg["sampler"]["engine"] = "pymc"
    config = sicily["tmp"] / "sicily_pymc.yaml"
    config.write_text(yaml.safe_dump(cfg))
    seen = {}

    def sample(**kw):
        seen.update(kw)
        raise _Stop

    monkeypatch.setattr(pymc, "sample", sample)
    tmp = sicily["tmp"]
    argv = ["fit", str(config), "--outcome", "aces", "--model", "its", "--prepared", str(tmp / "prepared")]
    argv += ["--scores", str(tmp / "none.csv"), "--out-dir", str(tmp / "p"), "--threads", "1"]
    with pytest.raises(_Stop):
        main(argv)
    assert (seen["cores"], seen["chains"], seen["nuts_sampler"]) == (1, 2, "pymc")
