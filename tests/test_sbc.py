"""Simulation-based calibration: ranks, uniformity tests, coverage, and one tiny end-to-end chunk."""

import dataclasses

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import stats

from qialign.errors import QialignError
from qialign.models.likelihood import LOG_BASE_DATA
from qialign.studies.ranks import (
    bin_counts,
    bin_probabilities,
    chi_square_uniformity,
    clopper_pearson,
    ecdf_uniformity,
    summarise,
)
from qialign.studies.sbc import (
    COLUMNS,
    OUTCOME_DATA,
    chunk_replicates,
    rank_of,
    read_chunks,
    replicate_seeds,
    thin,
)
from qialign.studies.sbc_config import sbc_config
from qialign.studies.sbc_data import sbc_cells

TINY = {
    "seed": 7,
    "replicates": 3,
    "chunks": 2,
    "design": {"clusters": 4, "periods": 3, "n": 20},
    "sampler": {"chains": 2, "draws": 50, "tune": 50},
    "ranks": {"draws": 49, "bins": 5, "ecdf_simulations": 500},
    "parameters": ["treatment_effect", "alignment_interaction", "sd_cluster"],
}


# --- ranks ------------------------------------------------------------------------------------


def test_rank_is_the_number_of_draws_below_the_truth():
    draws = np.array([0.1, 0.5, 0.2, 0.9, 0.3])
    assert rank_of(0.35, draws) == 3
    assert rank_of(-1.0, draws) == 0
    assert rank_of(2.0, draws) == 5  # L
    assert rank_of(0.5, draws) == 3  # a tie counts as not below without a generator


def test_ties_are_broken_uniformly_at_random():
    rng = np.random.default_rng(0)
    ranks = [rank_of(1.0, np.array([0.0, 1.0, 1.0, 1.0, 2.0]), rng) for _ in range(4000)]
    # one draw below, three tied: rank uniform on {1, 2, 3, 4}
    counts = np.bincount(ranks, minlength=5)
    assert counts[0] == 0 and counts[1:].min() > 900


def test_thin_takes_evenly_spaced_chain_major_draws():
    draws = np.arange(20.0).reshape(2, 10)  # (chain, draw)
    np.testing.assert_array_equal(thin(draws, 5), [0, 4, 8, 12, 16])
    np.testing.assert_array_equal(thin(draws, 20), np.arange(20))
    assert len(np.unique(thin(draws, 7))) == 7
    with pytest.raises(ValueError):
        thin(draws, 21)


def test_rank_of_thinned_draws_on_a_constructed_posterior():
    draws = np.arange(1000.0).reshape(2, 500)  # thinned (L = 99): 0, 10, 20, ..., 980 (spacing 1000 // 99)
    t = thin(draws, 99)
    np.testing.assert_array_equal(t, (np.arange(99) * 1000) // 99)
    assert rank_of(0.0, t) == 0
    assert rank_of(5.0, t) == 1
    assert rank_of(505.0, t) == int(np.sum(t < 505))
    assert rank_of(1e6, t) == 99


# --- uniformity -------------------------------------------------------------------------------


def test_bin_probabilities_are_exact():
    # ranks 0..9 into 4 bins: floor(r * 4 / 10) -> 0,0,0,1,1,2,2,2,3,3
    np.testing.assert_allclose(bin_probabilities(9, 4), [0.3, 0.2, 0.3, 0.2])
    np.testing.assert_allclose(bin_probabilities(199, 10), np.full(10, 0.1))
    np.testing.assert_array_equal(bin_counts(np.arange(10), 9, 4), [3, 2, 3, 2])


def test_chi_square_on_exactly_uniform_and_skewed_ranks():
    L = 199
    uniform = np.tile(np.arange(L + 1), 2)  # every rank twice: perfectly flat
    stat, p = chi_square_uniformity(uniform, L, 10)
    assert stat == pytest.approx(0.0) and p == pytest.approx(1.0)
    skewed = np.r_[np.zeros(60, int), np.arange(0, L + 1, 1)[:140]]  # too many low ranks
    stat, p = chi_square_uniformity(skewed, L, 10)
    expected = stats.chisquare(bin_counts(skewed, L, 10), np.full(10, len(skewed) / 10))
    assert stat == pytest.approx(expected.statistic) and p == pytest.approx(expected.pvalue)
    assert p < 1e-10
    with pytest.raises(ValueError):
        chi_square_uniformity([0, 200], L, 10)


def test_ecdf_test_accepts_uniform_and_rejects_misshapen_ranks():
    L, N = 199, 200
    flat = np.arange(L + 1)
    t = ecdf_uniformity(flat, L, simulations=2000, seed=1)
    assert t.p_value > 0.9
    assert np.all(t.lower <= t.diff) and np.all(t.diff <= t.upper)
    assert 0 < t.gamma < 0.05
    rng = np.random.default_rng(3)
    # posterior too wide: ranks pile up in the middle; too narrow: at both ends; biased: shifted up
    middle = np.clip(rng.normal(100, 25, N).round(), 0, L).astype(int)
    ends = np.where(rng.random(N) < 0.5, rng.integers(0, 30, N), rng.integers(170, 200, N))
    shifted = rng.integers(40, 200, N)
    for ranks in (middle, ends, shifted):
        assert ecdf_uniformity(ranks, L, simulations=2000, seed=1).p_value < 0.001
        assert chi_square_uniformity(ranks, L, 10)[1] < 0.001


def test_ecdf_test_is_calibrated_under_the_null():
    rng = np.random.default_rng(11)
    ps = np.array(
        [ecdf_uniformity(rng.integers(0, 50, 100), 49, simulations=1000, seed=k).p_value for k in range(200)]
    )
    # P(p <= 0.1) should be 0.1: 20 of 200 expected; binomial 99.9% range is about 7..36
    assert 7 <= np.sum(ps <= 0.1) <= 36


def test_clopper_pearson_matches_scipy():
    for k, n in [(0, 10), (5, 10), (10, 10), (180, 200)]:
        ci = stats.binomtest(k, n).proportion_ci(method="exact")
        assert clopper_pearson(k, n) == pytest.approx((ci.low, ci.high))


def binomial(raw: dict) -> dict:
    """The flat settings of the one (binomial) model of a study."""
    return sbc_config(raw)["models"]["binomial"]


def test_summarise_flags_criteria():
    cfg = binomial({"ranks": {"draws": 199, "bins": 10, "ecdf_simulations": 1000}})
    L = 199
    rows = []
    for p, ranks, cover in [
        ("treatment_effect", np.arange(200), np.arange(200) % 10 != 0),  # flat, 90% coverage
        ("alignment_interaction", np.full(200, 5), np.zeros(200, bool)),  # all low, 0% coverage
        ("sd_cluster", np.arange(200), np.ones(200, bool)),  # not a checked parameter
    ]:
        for i, (r, c) in enumerate(zip(ranks, cover, strict=True)):
            rows.append(
                {
                    "model": "binomial",
                    "replicate": i,
                    "parameter": p,
                    "rank": r,
                    "L": L,
                    "covered": c,
                    "prob_positive": 0.01 if i < 50 else (0.99 if i < 60 else 0.9),  # 60 successes
                    "divergences": 0,
                    "r_hat_max": 1.0,
                    "ess_bulk_min": 500.0,
                    "sample_s": 1.0,
                }
            )
    s = summarise(pd.DataFrame(rows), cfg).set_index("parameter")
    assert (s["model"] == "binomial").all()
    assert s.loc["treatment_effect", "coverage"] == pytest.approx(0.9)
    assert s.loc["treatment_effect", "passes"] is True
    assert s.loc["alignment_interaction", "passes"] is False
    assert s.loc["sd_cluster", "passes"] is None
    assert s.loc["treatment_effect", "chi2_p"] == pytest.approx(1.0)
    # assurance / power: P(> 0) or P(< 0) above 0.975 in 60 of 200 replicates
    assert s.loc["treatment_effect", "success_rate"] == pytest.approx(0.3)
    assert s.loc["treatment_effect", "success_lower"] < 0.3 < s.loc["treatment_effect", "success_upper"]


# --- config, design, seeds ---------------------------------------------------------------------


def test_config_defaults_and_problems():
    cfg = binomial({})
    assert cfg["replicates"] >= 200 and cfg["sampler"]["cores"] == 1 and cfg["name"] == "binomial"
    with pytest.raises(QialignError, match="ranks/draws"):
        sbc_config({"ranks": {"draws": 5000}})  # more than chains x draws
    with pytest.raises(QialignError, match="chunks"):
        sbc_config({"replicates": 3, "chunks": 4})
    with pytest.raises(QialignError, match="baseline"):
        sbc_config({"design": {"baseline": 1.5}})
    with pytest.raises(QialignError, match="models/p/design/baseline: a rate"):
        sbc_config({"models": {"p": {"family": "poisson", "design": {"baseline": -1}}}})
    with pytest.raises(QialignError, match="models/p/seed: set once for the study"):
        sbc_config({"models": {"p": {"family": "poisson", "seed": 2}}})
    with pytest.raises(QialignError, match="models/p/chunks: an integer between 1 and replicates"):
        sbc_config({"models": {"p": {"family": "poisson", "replicates": 3, "chunks": 4}}})
    # one model's N raised: its own replicates and chunks, the others the study's
    models = sbc_config({"models": {"a": {}, "b": {"replicates": 600, "chunks": 24}}})["models"]
    assert (models["a"]["replicates"], models["a"]["chunks"]) == (200, 8)
    assert (models["b"]["replicates"], models["b"]["chunks"]) == (600, 24)
    with pytest.raises(QialignError, match="models/p/famly: unknown key"):
        sbc_config({"models": {"p": {"famly": "poisson"}}})
    with pytest.raises(QialignError, match="propagation: one of plugin, joint"):
        sbc_config({"propagation": "draws"})


def test_the_shipped_config_is_valid():
    from pathlib import Path

    from qialign.families import FAMILIES
    from qialign.studies.sbc_config import load_sbc_config

    cfg = load_sbc_config(Path(__file__).parents[1] / "config" / "sbc.yaml")
    assert cfg["replicates"] >= 200
    models = cfg["models"].values()
    # every family but bernoulli (binomial cells of n = 1), and the joint survey + outcome model
    # whose survey cutpoint prior is checked too
    assert {m["family"] for m in models} == set(FAMILIES) - {"bernoulli"}
    joint = [m for m in models if m["propagation"] == "joint"]
    assert [m["name"] for m in joint] == ["joint"] and "threshold_scale" in joint[0]["parameters"]
    for m in models:
        assert {"treatment_effect", "alignment_interaction"} <= set(m["criteria"]["parameters"])


def test_design_is_a_stepped_wedge_with_standardised_alignment():
    cfg = binomial({"design": {"clusters": 12, "periods": 7, "n": 50}})
    cells, al = sbc_cells(cfg)
    assert len(cells) == 84 and (cells["n"] == 50).all()
    grid = cells.pivot(index="cluster", columns="period", values="treated")
    assert (grid[1] == 0).all() and (grid[7] == 1).all()
    assert (grid.diff(axis=1).fillna(0) >= 0).all().all()  # once treated, stays treated
    assert sorted(grid.sum(axis=1).value_counts().to_dict().values()) == [2] * 6  # 2 clusters per step
    assert al.mean() == pytest.approx(0, abs=1e-12) and al.is_unique


def test_seeds_and_chunks():
    assert replicate_seeds(1, 5, "binomial") == replicate_seeds(1, 5, "binomial")
    assert len({replicate_seeds(1, r, "binomial") for r in range(100)}) == 100
    assert replicate_seeds(1, 5, "binomial") != replicate_seeds(1, 5, "poisson")
    cfg = binomial({"replicates": 10, "chunks": 3})
    parts = [chunk_replicates(cfg, c) for c in range(3)]
    np.testing.assert_array_equal(np.concatenate(parts), np.arange(10))
    with pytest.raises(QialignError):
        chunk_replicates(cfg, 3)


def test_read_chunks_rejects_a_replicate_twice(tmp_path):
    row = pd.DataFrame([dict.fromkeys(COLUMNS, 0) | {"parameter": "treatment_effect", "model": "b"}])
    row.to_csv(tmp_path / "a.csv", index=False)
    row.to_csv(tmp_path / "b.csv", index=False)
    with pytest.raises(QialignError, match="more than one chunk"):
        read_chunks([tmp_path / "a.csv", tmp_path / "b.csv"])


# --- end to end (tiny) -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_model():
    from qialign.studies.sbc import prepare

    return prepare(binomial(TINY))


def test_intercept_prior_is_fixed_not_empirical(tiny_model):
    from scipy.special import logit

    m = tiny_model
    assert m.design.mu0 == pytest.approx(logit(0.3))
    mu = m.prior_model["mu"].owner.inputs[-2]  # Normal(mu0, sd): the location input
    assert float(mu.eval()) == pytest.approx(logit(0.3))


def test_swapped_events_give_the_logp_of_a_freshly_built_model(tiny_model):
    import pymc as pm
    from pymc.model.fgraph import clone_model

    from qialign.models.build import build_model
    from qialign.studies.sbc import draw_prior

    m = tiny_model
    truth, data = draw_prior(m, 123)
    events = data[OUTCOME_DATA]  # with log C(n, events): the model data a replicate swaps
    assert set(data) == {OUTCOME_DATA, LOG_BASE_DATA}
    swapped = clone_model(m.prior_model)
    pm.set_data(data, model=swapped)
    fresh = build_model(dataclasses.replace(m.design, y={"events": events.astype(float)}), m.spec)
    point = fresh.initial_point()
    point = {k: v + 0.1 for k, v in point.items()}
    assert swapped.compile_logp()(point) == pytest.approx(fresh.compile_logp()(point), rel=1e-10)


def test_chunk_end_to_end(tiny_model, tmp_path, monkeypatch):
    import qialign.studies.sbc as sbc
    from qialign.steps.sbc import sbc_chunk_step, sbc_summarise_step

    monkeypatch.setattr(sbc, "prepare", lambda cfg, compile=True: tiny_model)  # reuse the compile
    cfg_path = tmp_path / "sbc.yaml"
    cfg_path.write_text(yaml.safe_dump(TINY))
    t0 = sbc_chunk_step(cfg_path, "binomial", 0, tmp_path / "chunk_0.csv")
    t1 = sbc_chunk_step(cfg_path, "binomial", 1, tmp_path / "chunk_1.csv")
    assert list(t0.columns) == COLUMNS
    assert len(t0) == 2 * 3 and len(t1) == 1 * 3  # replicates 0-1 and 2, three parameters each
    both = pd.concat([t0, t1])
    assert both["rank"].between(0, 49).all() and (both["L"] == 49).all()
    assert (both["lower"] <= both["post_mean"]).all() and (both["post_mean"] <= both["upper"]).all()
    assert both["divergences"].ge(0).all() and both["r_hat_max"].notna().all()
    # the true values are the prior draw of each replicate's own seed
    for r in range(3):
        truth, data = sbc.with_truth(tiny_model, r)
        events = data[OUTCOME_DATA]
        got = both[both["replicate"] == r].set_index("parameter")["true"]
        for p, v in truth.items():
            assert got[p] == pytest.approx(v)
        assert both.loc[both["replicate"] == r, "outcome_mean"].iloc[0] == pytest.approx(
            events.sum() / (12 * 20)
        )
    # true values vary between replicates (drawn, not fixed)
    assert both[both["parameter"] == "treatment_effect"]["true"].nunique() == 3

    out = tmp_path / "out"
    summary = sbc_summarise_step(cfg_path, [tmp_path / "chunk_0.csv", tmp_path / "chunk_1.csv"], out)
    assert set(summary["parameter"]) == set(TINY["parameters"])
    assert (summary["replicates"] == 3).all()
    ranks = pd.read_csv(out / "ranks.csv")
    assert len(ranks) == 9
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 9
    assert 'src="http' not in html and "<link" not in html and "<script" not in html  # self-contained


def test_fixed_truth_draws_the_rest_from_the_prior():
    """truth: {treatment_effect: -0.5}: every replicate's treatment effect is -0.5 (power run)."""
    from qialign.studies.sbc import draw_prior, prepare

    cfg = binomial(
        {
            "design": {"clusters": 4, "periods": 3, "n": 20},
            "replicates": 2,
            "chunks": 1,
            "truth": {"treatment_effect": -0.5},
            "ranks": {"draws": 19, "bins": 4},
        }
    )
    m = prepare(cfg, compile=False)
    draws = [draw_prior(m, seed) for seed in (1, 2)]
    assert [t["treatment_effect"] for t, _ in draws] == [-0.5, -0.5]
    assert draws[0][0]["alignment_interaction"] != draws[1][0]["alignment_interaction"]
    events = [data[OUTCOME_DATA] for _, data in draws]
    assert all(e.shape == (12,) and (e >= 0).all() and (e <= 20).all() for e in events)
