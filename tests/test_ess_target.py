"""Draws set by the ESS target: the next checkpoint is where the ESS would reach its floor, sampling
stops at the first that meets the diagnostics, and the result does not depend on how the chains
were run."""

from __future__ import annotations

import numpy as np

from qialign.config import schema_defaults
from qialign.inference.diagnostics import diagnose
from qialign.inference.ess_target import first_draws, next_checkpoint, sample_to_ess
from qialign.inference.sampling import compile_nutpie
from test_structure_cache import model

S = {"chains": 2, "draws": 200, "draws_min": 50, "tune": 100, "target_accept": 0.9}


def test_the_next_checkpoint_is_where_the_ess_would_reach_its_floor():
    th = {"ess_bulk_min": 400, "ess_tail_min": 400}

    def at(d, bulk, tail):
        return next_checkpoint(d, {"ess_bulk_min": bulk, "ess_tail_min": tail}, th, 1000)

    assert at(500, 288, 600) == 800  # 500 x 400 / 288 x 1.15 = 798.6, rounded up to 50s
    assert at(250, 500, 144) == 800  # the tail ESS is the shorter: straight past 500
    assert at(500, 450, 420) == 750  # R-hat alone failed: at least 1.5 times the draws
    assert at(250, 20, 400) == 1000  # far short: the most draws
    assert at(250, float("nan"), 400) == 1000  # no ESS: the most draws


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
    # a floor the first 50 draws miss: sampling stops where the checkpoints' rule says it does,
    # replayed on the first draws of the full trace
    floor = {**easy, "ess_bulk_min": 2 * diagnose(first_draws(full, 50), easy)[2]["ess_bulk_min"]}
    d = 50
    while d < 200 and not diagnose(first_draws(full, d), floor)[0]:
        d = next_checkpoint(d, diagnose(first_draws(full, d), floor)[2], floor, 200)
    assert 50 < d < 200
    assert sample_to_ess(compiled, {**S, "cores": 2}, floor, seed=4)["posterior"].sizes["draw"] == d


def test_the_retry_doubles_the_most_draws_only_when_they_are_ess_targeted():
    """nutpie with draws_min < draws: the retry may sample twice as long (it still stops at the
    first checkpoint that passes); fixed-length sampling (refits, PyMC) keeps its draws. A
    geometry problem (divergences, E-BFMI) also raises target_accept; R-hat or ESS alone do not."""
    from qialign.inference.retry import _retry_settings

    s = {"engine": "nutpie", "draws": 1000, "draws_min": 250, "tune": 1000, "target_accept": 0.95}
    geometry, mixing = {"geometry_ok": False}, {"geometry_ok": True}
    assert _retry_settings(s, geometry) == {**s, "draws": 2000, "tune": 2000, "target_accept": 0.99}
    assert _retry_settings(s, mixing) == {**s, "draws": 2000, "tune": 2000}
    fixed = {**s, "draws_min": 1000}
    assert _retry_settings(fixed, geometry) == {**fixed, "tune": 2000, "target_accept": 0.99}
    pymc = {**s, "engine": "pymc", "target_accept": 0.8}
    assert _retry_settings(pymc, geometry) == {**pymc, "tune": 2000, "target_accept": 0.95}
    assert _retry_settings(pymc, mixing) == {**pymc, "tune": 2000}


def test_diagnose_tells_geometry_from_mixing():
    """``geometry_ok`` is False exactly when divergences or E-BFMI fail their thresholds."""
    from qialign.inference.diagnostics import diagnose

    idata = sample_to_ess(compile_nutpie(model(1)), {**S, "cores": 2}, schema_defaults("diagnostics"), 4)
    ok, problems, details = diagnose(idata)
    assert details["geometry_ok"] and details["divergences"] == 0
    strict = {"divergences_max": -1}
    ok, problems, details = diagnose(idata, strict)
    assert not ok and not details["geometry_ok"] and "0 divergent transition(s) > -1" in problems
    ok, problems, details = diagnose(idata, {"ess_bulk_min": 1e9})
    assert not ok and details["geometry_ok"] and any("bulk ESS" in p for p in problems)


def test_chains_split_between_starts_are_pooled_in_order_whatever_the_cores():
    """Two parts (the joint model's two signs of gamma): chains split 2 + 2, part k seeded
    seed + 7919 k, pooled in order; the same draws whether the parts ran at once or one after
    another (fewer cores than parts), and ``resolve`` sees the pooled draws."""
    from qialign.inference.ess_target import split_chains

    assert [p["chains"] for p in split_chains({"chains": 5, "cores": 2}, 2)] == [3, 2]
    assert [p["cores"] for p in split_chains({"chains": 4, "cores": 1}, 2)] == [1, 1]
    compiled = compile_nutpie(model(1))
    easy = {**schema_defaults("diagnostics"), "ess_bulk_min": 5, "ess_tail_min": 5, "r_hat_max": 10.0}
    seen = []
    s = {**S, "chains": 4}
    together = sample_to_ess([compiled, compiled], {**s, "cores": 2}, easy, 4, lambda d: seen.append(d) or d)
    in_turn = sample_to_ess([compiled, compiled], {**s, "cores": 1}, easy, 4)
    assert together["posterior"].sizes["chain"] == 4 and list(together["posterior"]["chain"]) == [0, 1, 2, 3]
    np.testing.assert_array_equal(together["posterior"]["mu"], in_turn["posterior"]["mu"])
    second = sample_to_ess(compiled, {**S, "cores": 2, "draws_min": 200}, easy, 4 + 7919)
    d = together["posterior"].sizes["draw"]
    np.testing.assert_array_equal(together["posterior"]["mu"][2:], second["posterior"]["mu"][:, :d])
    assert seen and seen[-1]["posterior"].sizes["chain"] == 4
    # never met: every part runs to the most draws (one finishing first is waited for once)
    hard = {**easy, "ess_bulk_min": 1e9}
    full = sample_to_ess([compiled, compiled], {**s, "chains": 3, "cores": 2}, hard, 4)
    assert full["posterior"].sizes["chain"] == 3 and full["posterior"].sizes["draw"] == 200


def test_one_chain_is_diagnosed_without_r_hat():
    """A single chain (e.g. the others dropped in a minor mode) has no R-hat: named as a problem."""
    import xarray as xr

    from qialign.inference.diagnostics import diagnose

    draws = np.random.default_rng(0).normal(size=(1, 1000))
    one = xr.DataTree.from_dict(
        {
            "posterior": xr.Dataset({"mu": (("chain", "draw"), draws)}),
            "sample_stats": xr.Dataset({"diverging": (("chain", "draw"), np.zeros((1, 1000), bool))}),
        }
    )
    ok, problems, details = diagnose(one, {})
    assert not ok and problems == ["R-hat not computable from 1 chain(s): convergence is unchecked"]
    assert details["ess_bulk_min"] > 800
