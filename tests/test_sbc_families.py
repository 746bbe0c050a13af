"""SBC of every family and of ``propagation: joint``: what each replicate simulates, a tiny study
through the real chunk and summarise steps (every model on one page), and (slow) N = 200 per model."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import stats
from scipy.special import expit

from qialign.studies.sbc import COLUMNS
from qialign.studies.sbc_config import load_sbc_config, sbc_config
from qialign.studies.sbc_data import sbc_cells, sbc_survey, simulate_answers, simulate_sumsq, threshold_draw

SHIPPED = Path(__file__).parents[1] / "config" / "sbc.yaml"
MODELS = ["binomial", "poisson", "negative_binomial", "gaussian", "lognormal", "joint"]
#: the fast suite's models (the new likelihood data paths: count exposure, swapped sums of squares);
#: every model goes through the same steps in the slow test_every_model_through_the_steps (a
#: compile per model: about 35 min wall here under load, too long for the fast suite)
FAST = ["poisson", "gaussian"]

#: a tiny study of every model: 8 replicates in one chunk (one compile per model; chunking is
#: tested in test_sbc.py), 12 cells, 2 x 60 draws, L = 19
TINY = {
    "seed": 3,
    "replicates": 8,
    "chunks": 1,
    "design": {"clusters": 4, "periods": 3, "n": 20},
    "sampler": {"chains": 2, "draws": 60, "tune": 60},
    "ranks": {"draws": 19, "bins": 4, "ecdf_simulations": 200},
    "parameters": ["treatment_effect", "alignment_interaction", "sd_cluster"],
    "models": {
        "binomial": {"family": "binomial"},
        "poisson": {"family": "poisson", "design": {"baseline": 0.5}},
        "negative_binomial": {
            "family": "negative_binomial",
            "design": {"baseline": 0.5},
            "parameters": ["treatment_effect", "alignment_interaction", "phi"],
        },
        "gaussian": {
            "family": "gaussian",
            "parameters": ["treatment_effect", "alignment_interaction", "sigma"],
        },
        "lognormal": {"family": "lognormal"},
        "joint": {
            "family": "binomial",
            "propagation": "joint",
            "survey": {"clinical": 2, "managerial": 1, "domains": 1, "items": 2, "categories": 3},
        },
    },
}


# --- what a replicate simulates ----------------------------------------------------------------


def test_cells_carry_each_familys_statistics():
    cfg = sbc_config(TINY)["models"]
    for name, cols in [
        ("binomial", {"events"}),
        ("poisson", {"count", "exposure"}),
        ("gaussian", {"sum", "sumsq"}),
    ]:
        cells, _ = sbc_cells(cfg[name])
        assert cols <= set(cells.columns) and len(cells) == 12
    cells, _ = sbc_cells(cfg["poisson"])
    assert (cells["exposure"] == 20).all() and (cells["count"] == 10).all()  # rate 0.5 per patient


def test_sums_of_squares_are_those_of_normal_patients():
    """(S, sumsq) from S ~ N(n m, sqrt(n) s) and simulate_sumsq has the joint law of n iid N(m, s)
    draws: the within-cell SS = sumsq - S^2 / n is s^2 chi^2_(n-1) whatever S."""
    rng = np.random.default_rng(0)
    n, s, m, cells = 5, 0.7, 1.3, 40000
    sums = rng.normal(n * m, np.sqrt(n) * s, cells)
    ss = simulate_sumsq(sums, np.full(cells, float(n)), s, rng) - sums**2 / n
    patients = rng.normal(m, s, (cells, n))
    direct = ((patients - patients.mean(axis=1, keepdims=True)) ** 2).sum(axis=1)
    assert stats.ks_2samp(ss, direct).pvalue > 0.001
    assert ss.mean() == pytest.approx(s**2 * (n - 1), rel=0.02)
    assert abs(np.corrcoef(ss, sums)[0, 1]) < 0.02


def test_survey_design_has_every_respondent_answer_every_item():
    cfg = sbc_config(TINY)["models"]["joint"]
    survey = sbc_survey(cfg, ["a", "b", "c", "d"])
    assert len(survey.y) == 4 * 3 * 2  # clusters x respondents x items
    w, j, role, d = np.unravel_index(survey.cell, survey.shape)
    assert (w == 0).all() and (d == 0).all()
    per = pd.DataFrame({"resp": survey.respondent, "j": j, "role": role}).drop_duplicates()
    assert per.groupby(["j", "role"]).size().tolist() == [2, 1] * 4  # 2 clinical, 1 managerial each


def _prior(**values) -> dict:
    """A prior draw as sample_prior_predictive gives it: (chain, draw, ...) arrays."""
    return {k: np.asarray(v, float)[None, None] for k, v in values.items()}


def test_survey_answers_follow_the_graded_response_model():
    """Frequencies of simulated answers match P(Y = k) = F(a (theta - tau_k-1)) - F(a (theta - tau_k))."""
    survey_cfg = {"clinical": 1, "managerial": 1, "domains": 1, "items": 1, "categories": 3}
    cfg = {**sbc_config(TINY)["models"]["joint"], "survey": survey_cfg}
    survey = sbc_survey(cfg, ["a"])
    prior = _prior(
        discrimination=[1.5],
        threshold=[[-0.6, 0.8]],
        clinical=[[[0.2]]],
        gap=[[[-1.0]]],
        sigma_respondent=0.0,
        z_respondent=[0.0, 0.0],
    )
    rng = np.random.default_rng(1)
    answers = np.array([simulate_answers(prior, survey, rng) for _ in range(20000)])  # (sims, 2 respondents)
    for r, theta in enumerate([0.2, -0.8]):  # clinical, managerial = clinical + gap
        at_least = expit(1.5 * (theta - np.array([-0.6, 0.8])))
        p = -np.diff(np.r_[1.0, at_least, 0.0])
        freq = np.bincount(answers[:, r], minlength=3) / len(answers)
        assert np.all(np.abs(freq - p) < 4 * np.sqrt(p * (1 - p) / len(answers))), (freq, p)


def test_threshold_draw_is_the_ordered_normal_prior():
    """The drawn u mapped as the latent model maps it (t_1 = u_1, t_k = t_k-1 + exp(u_k)) are the
    order statistics of K - 1 iid N(0, 1): for K - 1 = 2, min and max with CDFs 1 - (1 - F)^2 and
    F^2, means -+ 1 / sqrt(pi)."""
    shape = {"clinical": 1, "managerial": 1, "domains": 1, "items": 3, "categories": 3}
    survey = sbc_survey({"survey": shape}, ["a"])
    u = np.concatenate([threshold_draw(survey, np.random.default_rng(s)) for s in range(3000)])
    assert u.shape == (9000, 2)
    t = np.cumsum(np.c_[u[:, :1], np.exp(u[:, 1:])], axis=1)
    low, high = t[:, 0], t[:, 1]
    assert stats.kstest(low, lambda x: 1 - stats.norm.sf(x) ** 2).pvalue > 0.001
    assert stats.kstest(high, lambda x: stats.norm.cdf(x) ** 2).pvalue > 0.001
    assert low.mean() == pytest.approx(-1 / np.sqrt(np.pi), abs=0.03)
    assert high.mean() == pytest.approx(1 / np.sqrt(np.pi), abs=0.03)


# --- a tiny study through the real steps --------------------------------------------------------


def run_tiny(root: Path, models: list[str]) -> tuple[Path, pd.DataFrame]:
    """The chunks of ``models`` of TINY (``qialign sbc chunk``'s step), then ``summarise``."""
    from qialign.steps.sbc import sbc_chunk_step, sbc_summarise_step

    raw = {**TINY, "models": {k: v for k, v in TINY["models"].items() if k in models}}
    cfg_path = root / "sbc.yaml"
    cfg_path.write_text(yaml.safe_dump(raw))
    chunks = []
    for name in models:
        for c in range(TINY["chunks"]):
            chunks.append(root / name / f"chunk_{c}.csv")
            sbc_chunk_step(cfg_path, name, c, chunks[-1])
    return root, sbc_summarise_step(cfg_path, chunks, root / "out")


@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory):
    return run_tiny(tmp_path_factory.mktemp("sbc_families"), FAST)


def check_ranks(root: Path, summary: pd.DataFrame, models: list[str]) -> None:
    """Ranks in 0..L for every parameter of every model, true values drawn anew per replicate."""
    ranks = pd.read_csv(root / "out" / "ranks.csv")
    assert list(ranks.columns) == COLUMNS
    cfg = sbc_config(TINY)["models"]
    for name in models:
        t = ranks[ranks["model"] == name]
        assert sorted(set(t["parameter"])) == sorted(cfg[name]["parameters"])
        assert sorted(set(t["replicate"])) == list(range(8))
        assert t["rank"].between(0, 19).all() and (t["L"] == 19).all()
        assert (t["lower"] <= t["post_mean"]).all() and (t["post_mean"] <= t["upper"]).all()
        assert t.groupby("parameter")["true"].nunique().min() == 8  # drawn anew per replicate
    assert set(summary["model"]) == set(models) and (summary["replicates"] == 8).all()


def test_every_model_gives_ranks_in_range(tiny_study):
    check_ranks(*tiny_study, FAST)


def test_swapped_data_reach_the_fit(tiny_study):
    """The posterior follows each replicate's simulated data, not the placeholders: the residual SD
    (from the swapped sums of squares) and the NB and Poisson event rates are pinned by 12 cells."""
    root, _ = tiny_study
    ranks = pd.read_csv(root / "out" / "ranks.csv").set_index(["model", "parameter"])
    sigma = ranks.loc[("gaussian", "sigma")]
    z = (sigma["post_mean"] - sigma["true"]) / sigma["post_sd"]
    assert (z.abs() < 4).all() and sigma["true"].std() > 5 * sigma["post_sd"].mean()
    assert ranks.loc[("poisson", "treatment_effect"), "outcome_mean"].nunique() == 8


def check_page(root: Path, summary: pd.DataFrame, models: list[str]) -> None:
    html = (root / "out" / "report.html").read_text()
    for name in models:
        assert f"<h2>{name}: " in html
    assert html.count("data:image/png;base64,") == 3 * len(summary)  # histogram, ECDF, recovery
    assert "expected range (95%)" in html
    saved = pd.read_csv(root / "out" / "summary.csv")
    cfg = sbc_config(TINY)["models"]
    assert len(saved) == sum(len(cfg[name]["parameters"]) for name in models)


def test_the_page_shows_every_model(tiny_study):
    check_page(*tiny_study, FAST)


@pytest.mark.slow
def test_every_model_through_the_steps(tmp_path):
    """Every model of TINY (the four other families' and the joint model's data swap included)
    through the real chunk and summarise steps: ranks in range, and one page showing all six.
    Slow: one nutpie compile per model (the joint one the longest)."""
    root, summary = run_tiny(tmp_path, MODELS)
    check_ranks(root, summary, MODELS)
    check_page(root, summary, MODELS)
    assert "latent survey alignment (joint)" in (root / "out" / "report.html").read_text()


# --- N = 200 per model (slow) -------------------------------------------------------------------


@pytest.mark.slow
# joint (4 chains from both signs of gamma, minor modes dropped) at N = 200 on 2026-12-02: theta
# coverage 0.870 (chi2 p 0.91), gamma 0.880 (chi2 p 0.56, ECDF p 0.31); it was a strict xfail at
# gamma 0.850, ECDF p 0.001 with 2 jittered chains (benchmarks/sbc_run.md)
@pytest.mark.parametrize("name", MODELS)
def test_shipped_model_is_calibrated(name):
    """Issue 14's done-when: the shipped config/sbc.yaml model ``name`` at its N (>= 200) has
    rank chi-square (and ECDF) p > 0.01 and 90% interval coverage within [0.87, 0.93] for the
    treatment effect and the alignment interaction. Proves that the model's prior, likelihood and
    sampler agree (ranks of the truth uniform among the posterior draws), for every family and for
    the joint survey + outcome model. Long: about 200 fits (minutes per family, longer for joint)."""
    from qialign.studies.ranks import summarise
    from qialign.studies.sbc import run_replicates

    cfg = load_sbc_config(SHIPPED)["models"][name]
    assert cfg["replicates"] >= 200
    ranks = run_replicates(cfg, range(cfg["replicates"]))
    summary = summarise(ranks, cfg).set_index("parameter")
    checked = summary.loc[cfg["criteria"]["parameters"]]
    assert (checked["chi2_p"] > 0.01).all(), checked
    assert checked["coverage"].between(0.87, 0.93).all(), checked


@pytest.mark.parametrize("name", ["negative_binomial", "joint"])
def test_prior_draw_fills_every_swapped_input(name):
    """Without compiling: a replicate of the models outside the fast fits draws the outcome (and the
    joint model's survey answers, 0..K-1, one per respondent x item) and the true values."""
    from qialign.studies.sbc import OUTCOME_DATA, SURVEY_DATA, draw_prior, prepare

    cfg = sbc_config(TINY)["models"][name]
    m = prepare(cfg, compile=False)
    truth, data = draw_prior(m, 5)
    assert set(truth) == set(cfg["parameters"]) and len(data[OUTCOME_DATA]) == 12
    assert (data[OUTCOME_DATA] >= 0).all()
    if name == "joint":
        answers = data[SURVEY_DATA]
        assert len(answers) == 4 * 3 * 2 and answers.min() >= 0 and answers.max() <= 2
        assert m.survey.y.name == SURVEY_DATA  # the model reads the shared answers
