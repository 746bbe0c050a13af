"""Draws set by the ESS target: checkpoints double from draws_min to draws, sampling stops at the
first that meets the diagnostics, and the result does not depend on how the chains were run."""

from __future__ import annotations

import numpy as np

from qialign.config import schema_defaults
from qialign.inference.ess_target import checkpoints, sample_to_ess
from qialign.inference.sampling import compile_nutpie
from test_structure_cache import model

S = {"chains": 2, "draws": 200, "draws_min": 50, "tune": 100, "target_accept": 0.9}


def test_checkpoints_double_up_to_the_most_draws():
    assert checkpoints(250, 1000) == [250, 500, 1000]
    assert checkpoints(300, 1000) == [300, 600, 1000]
    assert checkpoints(1000, 1000) == [1000]
    assert checkpoints(2000, 1000) == [1000]


def test_sampling_stops_at_the_first_checkpoint_that_meets_the_target():
    compiled = compile_nutpie(model(1))
    easy = {**schema_defaults("diagnostics"), "ess_bulk_min": 5, "ess_tail_min": 5, "r_hat_max": 10.0}
    hard = {**easy, "ess_bulk_min": 1e9}
    parallel = sample_to_ess(compiled, {**S, "cores": 2}, easy, seed=4)
    in_turn = sample_to_ess(compiled, {**S, "cores": 1}, easy, seed=4)
    assert parallel["posterior"].sizes["draw"] == in_turn["posterior"].sizes["draw"] == 50
    # the same seed gives the same draws whether the chains ran at once or in turn
    np.testing.assert_array_equal(parallel["posterior"]["mu"], in_turn["posterior"]["mu"])
    full = sample_to_ess(compiled, {**S, "cores": 2}, hard, seed=4)
    assert full["posterior"].sizes["draw"] == 200  # never met: the most draws
    np.testing.assert_array_equal(full["posterior"]["mu"][:, :50], parallel["posterior"]["mu"])


def test_the_retry_doubles_the_most_draws_only_when_they_are_ess_targeted():
    """nutpie with draws_min < draws: the retry may sample twice as long (it still stops at the
    first checkpoint that passes); fixed-length sampling (refits, PyMC) keeps its draws."""
    from qialign.inference.retry import _retry_settings

    s = {"engine": "nutpie", "draws": 1000, "draws_min": 250, "tune": 1000, "target_accept": 0.95}
    assert _retry_settings(s) == {**s, "draws": 2000, "tune": 2000, "target_accept": 0.99}
    fixed = {**s, "draws_min": 1000}
    assert _retry_settings(fixed) == {**fixed, "tune": 2000, "target_accept": 0.99}
    pymc = {**s, "engine": "pymc", "target_accept": 0.8}
    assert _retry_settings(pymc) == {**pymc, "tune": 2000, "target_accept": 0.95}
