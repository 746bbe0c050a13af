"""Sufficient statistics equal direct computation, and cell likelihoods equal row likelihoods."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from qialign.data import aggregate, analysis_rows, load_trial
from test_data_helpers import tiny_tables, write_trial

KEYS = ["cluster", "period", "comorbidity"]


@pytest.fixture(scope="module")
def trial(tmp_path_factory):
    tables, raw = tiny_tables(seed=3)
    tables["patients"]["comorbidity"] = tables["patients"]["comorbidity"] % 2  # repeat patterns
    return load_trial(write_trial(tmp_path_factory.mktemp("agg"), tables, raw))


def _direct(rows: pd.DataFrame, value: pd.Series) -> pd.DataFrame:
    g = rows.assign(v=value).groupby(KEYS)
    return pd.DataFrame({"n": g.size(), "sum": g["v"].sum(), "sumsq": g["v"].apply(lambda s: (s**2).sum())})


def test_bernoulli_events_exact(trial):
    rows = analysis_rows(trial, "excess")
    agg = aggregate(rows, "bernoulli", ["comorbidity"])
    direct = _direct(rows, rows["y"])
    got = agg.set_index(KEYS)
    assert len(agg) == len(direct) < len(rows)
    assert (got["n"] == direct["n"]).all() and (got["events"] == direct["sum"]).all()
    assert agg["events"].dtype == "int64"
    assert agg["n"].sum() == len(rows)


def test_gaussian_and_lognormal_sums_exact(trial):
    for outcome, family, transform in (("score", "gaussian", lambda y: y), ("los", "lognormal", np.log)):
        rows = analysis_rows(trial, outcome)
        got = aggregate(rows, family, ["comorbidity"]).set_index(KEYS)
        direct = _direct(rows, transform(rows["y"]))
        np.testing.assert_allclose(got["sum"], direct["sum"], rtol=1e-12)
        np.testing.assert_allclose(got["sumsq"], direct["sumsq"], rtol=1e-12)
        assert (got["n"] == direct["n"]).all()


def test_counts_and_exposure(trial):
    rows = analysis_rows(trial, "incidents")
    agg = aggregate(rows, "negative_binomial", [])
    assert len(agg) == 20
    assert agg["count"].sum() == rows["y"].sum()
    np.testing.assert_allclose(agg["exposure"].sum(), rows["exposure"].sum())


def test_deterministic_order(trial):
    rows = analysis_rows(trial, "excess")
    a = aggregate(rows, "bernoulli", ["comorbidity", "age"])
    b = aggregate(rows.sample(frac=1, random_state=1), "bernoulli", ["comorbidity", "age"])
    pd.testing.assert_frame_equal(a, b)
    assert a[["cluster", "period"]].apply(tuple, axis=1).is_monotonic_increasing


def test_binomial_loglik_cells_equal_rows(trial):
    rows = analysis_rows(trial, "excess")
    agg = aggregate(rows, "bernoulli", ["comorbidity"])
    for b0, b1, b2 in [(-0.3, 0.5, 0.2), (1.0, -1.0, 0.0)]:
        eta_r = b0 + b1 * rows["treated"] + b2 * rows["comorbidity"]
        eta_c = b0 + b1 * agg["treated"] + b2 * agg["comorbidity"]
        ll_rows = stats.bernoulli.logpmf(rows["y"], 1 / (1 + np.exp(-eta_r))).sum()
        p = 1 / (1 + np.exp(-eta_c))
        ll_cells = (agg["events"] * np.log(p) + (agg["n"] - agg["events"]) * np.log1p(-p)).sum()
        np.testing.assert_allclose(ll_cells, ll_rows, rtol=1e-10)


def test_gaussian_loglik_cells_equal_rows(trial):
    rows = analysis_rows(trial, "score")
    agg = aggregate(rows, "gaussian", ["comorbidity"])
    for mu0, theta, sigma in [(10.0, 0.3, 2.0), (8.0, -1.0, 1.3)]:
        m_r = mu0 + theta * rows["treated"]
        ll_rows = stats.norm.logpdf(rows["y"], m_r, sigma).sum()
        m = mu0 + theta * agg["treated"]
        ss = agg["sumsq"] - 2 * m * agg["sum"] + agg["n"] * m**2
        ll_cells = (-agg["n"] * np.log(sigma * np.sqrt(2 * np.pi)) - ss / (2 * sigma**2)).sum()
        np.testing.assert_allclose(ll_cells, ll_rows, rtol=1e-10)


def test_cell_summaries_match_patient_rows(tmp_path):
    """A gaussian outcome given as cluster-period mean/SD aggregates like its patient rows."""
    tables, raw = tiny_tables(seed=5)
    p = tables["patients"]
    g = p.groupby(["cluster", "period"])["score"]
    cp = tables["cluster_periods"].set_index(["cluster", "period"])
    cp["score2_mean"] = g.mean()
    cp["score2_sd"] = g.std(ddof=1)
    tables["cluster_periods"] = cp.reset_index()
    raw["outcomes"]["score2"] = {"family": "gaussian"}
    raw["covariates"] = []
    trial = load_trial(write_trial(tmp_path, tables, raw))
    a = aggregate(analysis_rows(trial, "score"), "gaussian", [])
    b = aggregate(analysis_rows(trial, "score2"), "gaussian", [])
    np.testing.assert_allclose(a["sum"], b["sum"], rtol=1e-5)
    np.testing.assert_allclose(a["sumsq"], b["sumsq"], rtol=1e-5)
    assert (a["n"] == b["n"]).all()


def test_unknown_family():
    with pytest.raises(ValueError):
        aggregate(pd.DataFrame(), "weibull", [])
