"""Fast checks without sampling: spec defaults, design arrays, exact cell-vs-row log density."""

import numpy as np
import pytest

from models_sim import simulate
from qialign.config import schema_defaults, synthetic_trial
from qialign.models.build import build_model
from qialign.models.design import build_design
from qialign.models.spec import ModelSpec, simulated_spec


def spec_for(family, **model):
    return simulated_spec(family, {"id": "m", **model}, covariates=["age"])


def test_from_config_fills_schema_defaults_and_merges_sampler():
    models = [
        {"id": "hh", "sampler": {"target_accept": 0.9}, "priors": {"effect_sd": 2.0}},
        {"id": "m", "covariates": False},
    ]
    trial = synthetic_trial(
        "stepped_wedge",
        {"los": {"family": "lognormal"}},
        models,
        covariates=["age"],
        sampler={"draws": 500, "chains": 2},
    )
    s, s2 = (ModelSpec.from_config(m, "los", trial["outcomes"]["los"], trial) for m in trial["models"])
    assert s.trend == "period" and s.cluster_period == "exchangeable" and s.exposure == "step"
    assert s.moderators == ["alignment"] and s.covariates == ["age"] and s.better == "lower"
    sampler = {"engine": "nutpie", "chains": 2, "draws": 500, "tune": 1000, "target_accept": 0.9, "cores": 2}
    sampler["draws_min"] = schema_defaults("sampler")["draws_min"]
    assert (
        s.sampler
        == sampler
        == {**schema_defaults("sampler"), "draws": 500, "chains": 2, "target_accept": 0.9}
    )
    assert s.priors == {**schema_defaults("priors"), "effect_sd": 2.0} and s.priors["sd_cluster"] == 0.5
    assert s.link == "identity" and s.label is None
    assert s2.covariates == [] and s2.sampler == {**sampler, "target_accept": 0.95}


def test_design_standardises_alignment_outcome_covariates_and_exposure():
    cells, rows, al, _ = simulate("gaussian", n_clusters=6, n_periods=5, n_per_cp=10, seed=2)
    d = build_design(cells, spec_for("gaussian", exposure="ramp", ramp_periods=2), al)
    assert abs(d.A.mean()) < 1e-12 and abs(d.A.std(ddof=1) - 1) < 1e-12
    # standardised y: patient-level mean 0, SD 1 reconstructed from cell sums
    N = d.n.sum()
    assert abs(d.y["sum"].sum() / N) < 1e-10
    assert abs((d.y["sumsq"].sum() - d.y["sum"].sum() ** 2 / N) / (N - 1) - 1) < 1e-10
    # covariates: patient-weighted mean 0
    assert np.allclose(np.average(d.Z, axis=0, weights=d.n), 0)
    assert d.cov_names == ["age[80+]", "age[<65]"]  # first sorted level ("65-79") is reference
    e = cells["exposure_time"].to_numpy()
    assert np.allclose(d.h, np.minimum(e / 2, 1) * cells["treated"])
    d_eti = build_design(cells, spec_for("gaussian", exposure="eti"), al)
    assert list(d_eti.eti_levels) == sorted(set(e[e > 0]))


@pytest.mark.parametrize("family", ["bernoulli", "gaussian", "lognormal", "poisson"])
@pytest.mark.parametrize("cluster_period", ["exchangeable", "ar1"])
def test_logp_cells_equals_rows(family, cluster_period):
    """Model log density on cells vs unaggregated rows at fixed points: equal up to a constant
    (binomial coefficients / factorials; none for gaussian and lognormal)."""
    cells, rows, al, _ = simulate(family, n_clusters=5, n_periods=4, n_per_cp=6, seed=4)
    spec = spec_for(family, cluster_period=cluster_period, trend="spline", spline_df=2)
    diffs = []
    logps = [build_model(build_design(t, spec, al), spec).compile_logp() for t in (cells, rows)]
    m = build_model(build_design(cells, spec, al), spec)
    rng = np.random.default_rng(0)
    for _ in range(2):
        pt = {k: v + rng.normal(0, 0.3, np.shape(v)) for k, v in m.initial_point().items()}
        diffs.append(logps[0](pt) - logps[1](pt))
    assert np.isfinite(diffs).all()
    assert abs(diffs[0] - diffs[1]) < 1e-6 * (1 + abs(diffs[0]))
    if family in ("gaussian", "lognormal"):
        assert abs(diffs[0]) < 1e-6


def test_auto_parametrisation_per_term():
    """auto: centre clusters at information per level x prior SD^2 >= 1000, exchangeable
    cluster-periods at >= 10 (no sampling)."""
    from qialign.models.build import centred_terms

    small, *_ = simulate("binomial", n_clusters=6, n_periods=5, n_per_cp=60, seed=3)
    big = small.assign(n=small["n"] * 100, events=small["events"] * 100)  # same rates, 6,000 / cp
    auto = spec_for("binomial")
    # 60 per ward-month at p ~ 0.4: ~14 x 0.3^2 ~ 1.3 per cluster-period, ~70 x 0.25 ~ 18 per cluster;
    # x100 patients: cluster 1,800 (centred), cluster-period 130 (centred, hierarchically)
    assert centred_terms(auto, build_design(small, auto)) == {"cluster": False, "cluster_period": False}
    assert centred_terms(auto, build_design(big, auto)) == {"cluster": True, "cluster_period": True}
    x10 = small.assign(n=small["n"] * 10, events=small["events"] * 10)  # cp 13: centred; cluster 180: not
    assert centred_terms(auto, build_design(x10, auto)) == {"cluster": False, "cluster_period": True}
    ar1 = spec_for("binomial", cluster_period="ar1")
    assert not centred_terms(ar1, build_design(big, ar1))["cluster_period"]  # AR(1): always non-centred
    tight = spec_for("binomial", priors={"sd_cluster": 0.05})
    assert not centred_terms(tight, build_design(big, tight))["cluster"]
    for p in ("centred", "noncentred"):
        s = spec_for("binomial", parametrization=p)
        assert set(centred_terms(s, build_design(big, s)).values()) == {p == "centred"}
    # the graph follows the decision: centred terms are free variables, non-centred are z's
    names = {v.name for v in build_model(build_design(big, auto), auto).free_RVs}
    assert {"v_cluster", "eta_cluster_period"} <= names and not {"z_cluster", "z_cluster_period"} & names
    names = {v.name for v in build_model(build_design(small, auto), auto).free_RVs}
    assert {"z_cluster", "z_cluster_period"} <= names and not {"v_cluster", "eta_cluster_period"} & names
