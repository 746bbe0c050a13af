"""Latent alignment: the graded-response measurement model (issue 4, items 2, 4 and 5).

Fast tests use a tiny hand-made survey and a short run. The recovery tests (``-m slow``) sample the
model on surveys simulated by ``qialign.studies.simulate`` and on the shipped default trial.
"""

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from qialign.alignment import (
    alignment_change,
    build_latent_model,
    descriptive_scores,
    draws_matrix,
    latent_scores,
    survey_long,
)
from qialign.alignment.latent import debiased_alignment
from qialign.studies.simulate import load_spec, simulate_trial
from sim_pipeline import binomial_range

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ROOT / "resources" / "headsup_synthetic"
FAST = {"chains": 2, "draws": 150, "tune": 150, "keep": 40}

CFG = {
    "roles": {"clinical": ["doctor", "nurse"], "managerial": ["matron"]},
    "scale": {"min": 1, "max": 5},
    "domains": {"safety": ["q1", "q2"], "flow": ["q3", "q4"]},
    "reverse": ["q2"],
}


def _tiny_survey() -> pd.DataFrame:
    """A: both roles answer alike; B: opposite priorities; C: no managers at all."""
    rng = np.random.default_rng(7)
    rows = []
    respondent = 0
    for cluster, clin, man in [("A", (4, 2), (4, 2)), ("B", (5, 1), (1, 5)), ("C", (3, 3), None)]:
        for role, prof, n in [("doctor", clin, 3), ("nurse", clin, 4), ("matron", man, 4)]:
            if prof is None:
                continue
            for _ in range(n):
                respondent += 1
                s, f = (np.clip(np.array(prof) + rng.integers(-1, 2, 2), 1, 5)).tolist()
                # q2 is reverse-coded: its raw answer is min + max - score
                rows.append((respondent, cluster, role, s, 6 - s, f, f))
    survey = pd.DataFrame(rows, columns=["respondent", "cluster", "role", "q1", "q2", "q3", "q4"])
    survey["q4"] = survey["q4"].astype(float)
    survey.loc[[0, 5], "q4"] = np.nan  # missing answers are absent from the likelihood
    return survey


def test_survey_long_reverse_and_missing():
    survey = _tiny_survey()
    data = survey_long(survey, CFG, ["A", "B", "C"])
    n_answers = int(survey[["q1", "q2", "q3", "q4"]].notna().sum().sum())
    assert len(data.y) == n_answers == 4 * len(survey) - 2
    assert data.y.min() >= 0 and data.y.max() <= 4 and data.n_categories == 5
    # reverse coding: respondent 1's q2 (raw 6 - s) scores as s, i.e. as q1
    first = data.respondent == 0
    q1 = data.y[first & (data.item == 0)]
    q2 = data.y[first & (data.item == 1)]
    assert q1.tolist() == q2.tolist()
    counts = data.counts.set_index("cluster")
    assert counts.loc["C", "n_managerial"] == 0 and counts.loc["A", "n_clinical"] == 7


def test_latent_tiny_shapes_warning_and_wide_prior():
    survey = _tiny_survey()
    with pytest.warns(UserWarning, match="cluster C wave 1: no managerial respondents"):
        fit = latent_scores(survey, CFG, ["A", "B", "C"], seed=3, sampler=FAST, prob=0.9)
    scores = fit.scores.set_index("cluster")
    assert list(fit.scores["method"].unique()) == ["latent"]
    for col in ["alignment", "alignment_sd", "lower", "upper", "n_clinical", "n_managerial"]:
        assert col in scores
    for col in ["clinical_safety", "managerial_flow", "gap_safety", "gap_flow"]:
        assert np.isfinite(scores[col]).all()
    assert (scores["alignment"] <= 0).all()
    assert (scores["lower"] <= scores["alignment"]).all() and (scores["alignment"] <= scores["upper"]).all()
    # opposite priorities score lower than shared ones
    assert scores.loc["B", "alignment"] < scores.loc["A", "alignment"]
    assert scores.loc["B", "gap_safety"] > 0 > scores.loc["B", "gap_flow"]
    # no managers: the prior, wider than a measured cluster's posterior
    width = scores["upper"] - scores["lower"]
    assert width["C"] > width["A"]
    assert fit.warnings and "cluster C" in fit.warnings[0]
    # kept draws: long table, keep x waves x clusters, matrix in cluster order
    assert list(fit.draws.columns) == ["draw", "wave", "wave_order", "cluster", "alignment"]
    assert len(fit.draws) == FAST["keep"] * 3
    m = draws_matrix(fit.draws, 1, ["C", "A", "B"])
    assert m.shape == (FAST["keep"], 3)
    assert m[:, 1].mean() == pytest.approx(scores.loc["A", "alignment"], abs=0.15)
    assert fit.timings["sample_s"] > 0
    # de-biased: the norm of the posterior-mean gaps, never below the posterior mean of the norm
    # (Jensen); for B, whose gaps are measured, the two nearly agree
    assert (scores["alignment_debiased"] >= scores["alignment"]).all()
    assert scores.loc["B", "alignment_debiased"] == pytest.approx(scores.loc["B", "alignment"], abs=0.2)


def test_debiased_alignment_is_minus_the_norm_of_the_mean_gaps():
    """E[g²] - Var(g) = (E g)²: alignment_debiased = -sqrt(mean_d (E g_d)² + 1e-9), exactly."""
    gap = np.array([[[[1.0, -2.0]]], [[[3.0, 0.0]]]])  # (draw, wave, cluster, domain)
    expected = -np.sqrt(((2.0**2) + (1.0**2)) / 2 + 1e-9)
    assert debiased_alignment(gap)[0, 0] == pytest.approx(expected, abs=1e-12)


def _graded_loglik(data, point: dict) -> float:
    """The graded-response log-likelihood of ``data`` written answer by answer with scipy (the
    module docstring's model), at a point of the model's free variables (thresholds unconstrained)."""
    from scipy.special import expit

    u = point["u_threshold"]
    t = np.cumsum(np.concatenate([u[:, :1], np.exp(u[:, 1:])], axis=1), axis=1)
    tau = np.exp(point["threshold_scale_log__"]) * t
    disc = np.exp(
        point["mu_log_discrimination"]
        + np.exp(point["sd_log_discrimination_log__"]) * point["z_discrimination"]
    )
    scale = np.exp(point["mu_log_gap_scale"] + np.exp(point["sd_log_gap_scale_log__"]) * point["z_gap_scale"])
    clinical = point["z_clinical"][0]
    gap = point["mean_gap"][None] + scale[:, None] * point["z_gap"][0]
    eta = np.stack([clinical, clinical + gap], axis=1).ravel()  # (cluster, role, domain), one wave
    b = np.exp(point["sigma_respondent_log__"]) * point["z_respondent"]
    total = 0.0
    for y, i, n, c in zip(data.y, data.item, data.respondent, data.cell, strict=True):
        x = eta[c] + b[n]
        upper = 1.0 if y == 0 else expit(disc[i] * (x - tau[i, y - 1]))
        lower = 0.0 if y == data.n_categories - 1 else expit(disc[i] * (x - tau[i, y]))
        total += np.log(upper - lower)
    return total


def test_latent_likelihood_is_the_graded_response_model():
    """The vectorised one-hot likelihood equals the graded-response model answer by answer (1e-9),
    at a random point, on the tiny survey (missing answers, a cluster without managers)."""
    import pymc as pm

    data = survey_long(_tiny_survey(), CFG, ["A", "B", "C"])
    model = build_latent_model(data)
    rng = np.random.default_rng(4)
    point = {k: v + rng.normal(0, 0.4, np.shape(v)) for k, v in model.initial_point().items()}
    (term,) = model.replace_rvs_by_values([model["loglik"]])
    loglik = pm.compile_fn(term, inputs=model.value_vars, on_unused_input="ignore", model=model)
    got = float(loglik(point))
    assert got == pytest.approx(_graded_loglik(data, point), abs=1e-9)


def test_respondent_slots_round_up_by_at_most_an_eighth():
    from qialign.alignment.latent_model import respondent_slots

    got = {n: respondent_slots(n) for n in (1, 8, 9, 100, 205, 208, 209, 213, 217, 224, 225, 481, 2000)}
    assert got == {
        1: 8, 8: 8, 9: 16, 100: 104, 205: 208, 208: 208, 209: 224, 213: 224, 217: 224, 224: 224,
        225: 240, 481: 512, 2000: 2048,
    }  # fmt: skip


def test_spare_respondent_slots_answer_nothing():
    """The padded respondent effects do not enter the likelihood (gradient exactly 0), the real
    ones do: the padding leaves the posterior of everything else unchanged."""
    import pymc as pm
    from pymc.pytensorf import gradient

    data = survey_long(_tiny_survey(), CFG, ["A", "B", "C"])
    n = len(data.respondents)
    model = build_latent_model(data)
    assert model["z_respondent"].eval().shape[0] > n  # 26 respondents in 32 slots
    (term,) = model.replace_rvs_by_values([model["loglik"]])
    z = model.rvs_to_values[model["z_respondent"]]
    grad = pm.compile_fn(gradient(term, [z]), inputs=model.value_vars, on_unused_input="ignore", model=model)
    rng = np.random.default_rng(3)
    point = {k: v + rng.normal(0, 0.4, np.shape(v)) for k, v in model.initial_point().items()}
    g = np.asarray(grad(point))
    assert np.all(g[n:] == 0.0) and np.all(g[:n] != 0.0)


def test_surveys_of_one_design_and_size_class_share_one_compiled_structure():
    """Survey arrays are model data and respondents are padded (``respondent_slots``): two surveys
    of one design with 213 and 217 respondents (both 224 slots) have one structure key, so the
    second loads the first's compilation; one with 206 (208 slots) does not."""
    from pymc.model.transform.optimization import freeze_dims_and_data

    from qialign.alignment.latent_model import respondent_slots
    from qialign.inference import structure_cache
    from qialign.studies.simulate_survey import staff_survey

    def key(seed: int) -> tuple[str, int]:
        survey, cfg, truth = staff_survey(seed)
        data = survey_long(survey, cfg, list(truth.index))
        frozen = freeze_dims_and_data(build_latent_model(data), data=[])
        return structure_cache.graph_key(*structure_cache._graph(frozen)), len(data.respondents)

    (a, n_a), (b, n_b), (c, n_c) = key(1), key(101), key(4)
    assert (n_a, n_b, n_c) == (213, 217, 206) and respondent_slots(n_c) == 208
    assert a == b
    assert c != a


def test_change_between_waves_from_draws_and_sds():
    scores = pd.DataFrame(
        {
            "cluster": ["A", "B", "A", "B"],
            "wave": [1, 1, 2, 2],
            "method": "descriptive",
            "alignment": [0.8, 0.6, 0.9, 0.5],
            "alignment_sd": [0.03, 0.04, 0.04, 0.03],
        }
    )
    out = alignment_change(scores, prob=0.95).set_index("cluster")
    assert out.loc["A", "difference"] == pytest.approx(0.1)
    assert out.loc["A", "difference_sd"] == pytest.approx(0.05)
    assert out.loc["B", "lower"] == pytest.approx(-0.1 - 1.959964 * 0.05, rel=1e-5)
    assert (out["wave_from"] == "1").all() and (out["wave_to"] == "2").all()  # labels
    # draws: the interval of the paired difference
    rng = np.random.default_rng(0)
    base = rng.normal(-1.0, 0.2, size=(400, 2))
    later = base + np.array([0.3, 0.0]) + rng.normal(0, 0.01, size=(400, 2))
    draws = pd.concat(
        [
            pd.DataFrame(
                {
                    "draw": np.repeat(np.arange(400), 2),
                    "wave": w,
                    "cluster": ["A", "B"] * 400,
                    "alignment": a.ravel(),
                }
            )
            for w, a in [(1, base), (2, later)]
        ]
    )
    means = draws.groupby(["wave", "cluster"])["alignment"].mean()
    lat = scores.assign(
        method="latent",
        alignment=[means[(w, c)] for w, c in zip(scores["wave"], scores["cluster"], strict=True)],
    )
    ch = alignment_change(lat, draws, prob=0.9).set_index("cluster")
    assert ch.loc["A", "difference"] == pytest.approx(0.3, abs=0.005)
    assert ch.loc["A", "upper"] - ch.loc["A", "lower"] < 0.05  # paired: the common part cancels
    assert ch.loc["B", "lower"] < 0 < ch.loc["B", "upper"]
    # one wave: an empty table with the header
    assert alignment_change(scores[scores["wave"] == 1]).empty


def _spec_many_clusters(n_per_site: tuple[int, int], seed: int) -> dict:
    spec = load_spec(DEFAULT / "simulation.yaml")
    spec["seed"] = seed
    spec["clusters_per_site"] = list(n_per_site)
    n = sum(n_per_site)
    spec["schedule"] = {"baseline": 1, "every": 1, "per_step": int(np.ceil(n / 10))}
    spec["periods"] = 12
    spec["patients"]["per_period"] = 2  # only the survey matters here
    spec["outcomes"] = {"y": {"family": "bernoulli", "baseline": 0.25}}
    return spec


@pytest.mark.slow
def test_latent_recovers_true_alignment_on_simulated_surveys():
    """25 wards, the default trial's survey per ward: correlation >= 0.8; the wards whose 90% and
    50% intervals cover their true alignment each within the two-sided 99% binomial range of a
    calibrated interval (18..25 and 6..19 of 25), so too wide fails as well as too narrow."""
    spec = _spec_many_clusters((13, 12), seed=11)
    sim = simulate_trial(spec, spec["seed"])
    cfg = {
        "roles": {k: list(v) for k, v in spec["survey"]["roles"].items()},
        "scale": {"min": 1, "max": 5},
        "domains": sim.truth["survey"]["domains"],
        "reverse": sim.truth["survey"]["reverse"],
    }
    clusters = sim.clusters["cluster"].tolist()
    fit = latent_scores(sim.survey, cfg, clusters, seed=5, prob=0.9)
    s = fit.scores[fit.scores["wave"] == "1"].set_index("cluster").reindex(clusters)
    truth = pd.Series({c: v["raw"] for c, v in sim.truth["alignment"].items()}).reindex(clusters)
    r = np.corrcoef(s["alignment"], truth)[0, 1]
    covered = int(((s["lower"] <= truth) & (truth <= s["upper"])).sum())
    lo50, hi50 = np.quantile(draws_matrix(fit.draws, "1", clusters), [0.25, 0.75], axis=0)
    covered50 = int(((lo50 <= truth) & (truth <= hi50)).sum())
    print(f"\nlatent vs truth (25 wards): r = {r:.3f}, covering: {covered} (90%), {covered50} (50%)")
    assert r >= 0.8
    for prob, count in ((0.9, covered), (0.5, covered50)):
        lo, hi = binomial_range(len(clusters), prob)
        assert lo <= count <= hi, (prob, count, (lo, hi))
    assert fit.diagnostics["r_hat_max"] < 1.05


@pytest.mark.slow
def test_default_trial_ranks_wards_like_the_truth():
    """The shipped survey: Spearman(latent alignment, true alignment) >= 0.8 (descriptive reported)."""
    from qialign.config import load_trial_config
    from qialign.data import load_trial

    cfg = load_trial_config(ROOT / "config" / "trials" / "headsup_synthetic.yaml")
    trial = load_trial(cfg)
    clusters = trial.clusters["cluster"].astype(str).tolist()
    truth = json.loads((DEFAULT / "truth.json").read_text())
    true = pd.Series({c: v["raw"] for c, v in truth["alignment"].items()}).reindex(clusters)
    t0 = time.perf_counter()
    fit = latent_scores(trial.survey, cfg["alignment"], clusters, seed=cfg["seed"])
    wall = time.perf_counter() - t0
    lat = fit.scores[fit.scores["wave"] == "1"].set_index("cluster").reindex(clusters)["alignment"]
    desc = descriptive_scores(trial.survey, cfg["alignment"], clusters, seed=cfg["seed"], n_boot=100)
    desc = desc[desc["wave"] == "1"].set_index("cluster").reindex(clusters)["alignment"]
    rho_lat = spearmanr(lat, true).statistic
    rho_desc = spearmanr(desc, true).statistic
    print(f"\nSpearman vs truth: latent {rho_lat:.3f}, descriptive {rho_desc:.3f}; latent fit {wall:.0f} s")
    assert rho_lat >= 0.8
    assert rho_desc >= 0.8
