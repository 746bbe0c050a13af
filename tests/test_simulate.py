"""Tests of the trial simulator: reproducibility, design properties, truth recovered by GLMs."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

from qialign.studies.simulate import load_spec, simulate_to_dir, simulate_trial

SHIPPED = Path(__file__).resolve().parents[1] / "resources" / "headsup_synthetic"
NO_RE = {"sd_site": 0.0, "sd_cluster": 0.0, "sd_cluster_period": 0.0, "sd_treatment": 0.0}
OFF = {"enabled": False}


def within(estimate: float, truth: float, se: float, k: float = 3.0) -> bool:
    return abs(estimate - truth) < k * se


@pytest.fixture(scope="module")
def headsup():
    return simulate_trial(load_spec(SHIPPED / "simulation.yaml"), 20261126)


def test_shipped_trial_is_byte_identical_to_regeneration(tmp_path: Path) -> None:
    simulate_to_dir(SHIPPED / "simulation.yaml", tmp_path)
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written == [
        "cluster_periods.csv",
        "clusters.csv",
        "implementation.csv",
        "patients.csv",
        "survey.csv",
        "truth.json",
    ]
    for name in written:
        assert (SHIPPED / name).read_bytes() == (tmp_path / name).read_bytes(), name


def test_default_trial_shape(headsup) -> None:
    p, c, truth = headsup.patients, headsup.clusters, headsup.truth
    assert 10_500 <= len(p) <= 11_500
    assert p["id"].is_unique
    assert list(c["cluster"]) == [f"W{j}" for j in range(1, 8)]
    assert list(c["site"]) == ["H1"] * 4 + ["H2"] * 3
    assert list(c["start_period"]) == [3, 5, 7, 9, 11, 13, 15]
    assert sorted(p["period"].unique()) == list(range(1, 17))
    baseline = p[p["period"] <= 2]
    assert abs(baseline["excess_los"].mean() - 0.26) < 0.04
    assert abs(baseline["readmit_30d"].mean() - 0.12) < 0.03
    assert abs(baseline["los_days"].median() - 5.0) < 0.6
    assert truth["synthetic"] is True and "SYNTHETIC" in truth["note"]
    excess = truth["outcomes"]["excess_los"]
    assert -0.05 <= excess["treatment_effect"] <= 0 and excess["alignment_interaction"] == -0.3
    assert excess["trend"][-1] < excess["trend"][0]  # secular improvement
    cp = headsup.cluster_periods
    assert len(cp) == 7 * 16 and (cp.groupby("cluster")["n"].sum() == p.groupby("cluster").size()).all()
    s = headsup.survey
    clinical = s["role"].isin(["doctor", "nurse", "ahp"])
    per_ward = s.assign(clinical=clinical).groupby(["cluster", "wave", "clinical"]).size()
    assert per_ward.xs(True, level="clinical").between(8, 15).all()
    assert per_ward.xs(False, level="clinical").between(3, 6).all()
    assert sorted(s["wave"].unique()) == [1, 2]
    assert [f"q{k}" for k in range(1, 18)] == list(s.columns[4:])


def test_seed_reproducibility() -> None:
    spec = load_spec(SHIPPED / "simulation.yaml")
    a, b, c = simulate_trial(spec, 7), simulate_trial(spec, 7), simulate_trial(spec, 8)
    for name in ("clusters", "patients", "cluster_periods", "survey", "implementation"):
        pd.testing.assert_frame_equal(getattr(a, name), getattr(b, name))
    assert a.truth == b.truth
    assert not a.patients.equals(c.patients)
    assert not a.survey.equals(c.survey)
    assert a.truth["alignment"] != c.truth["alignment"]


def test_switching_off_survey_leaves_outcomes_unchanged() -> None:
    spec = load_spec(SHIPPED / "simulation.yaml")
    a = simulate_trial(spec, 3)
    b = simulate_trial({**spec, "survey": {**spec["survey"], "enabled": False}}, 3)
    assert b.survey is None
    pd.testing.assert_frame_equal(a.patients, b.patients)


@pytest.fixture(scope="module")
def big_patient_trial():
    """20 clusters x 8 periods, no random effects: truth must be recoverable by a plain GLM."""
    spec = {
        "clusters_per_site": [10, 10],
        "periods": 8,
        "schedule": {"baseline": 1, "every": 1, "per_step": 3},
        "patients": {"per_period": 80},
        "write_alignment": True,
        "survey": {"missing_rate": 0.0},
        "outcomes": {
            "y": {
                **NO_RE,
                "family": "bernoulli",
                "baseline": 0.3,
                "trend": {"type": "linear", "slope": -0.05},
                "treatment_effect": 0.25,
                "alignment_interaction": -0.3,
                "fidelity_interaction": 0.2,
                "betas": {"age": 0.02, "comorbidity": 0.15},
            },
            "los": {
                **NO_RE,
                "family": "lognormal",
                "baseline": 5.0,
                "sigma": 0.7,
                "trend": {"type": "nonlinear", "slope": -0.02, "amplitude": 0.1, "cycle": 6},
                "treatment_effect": -0.5,
                "exposure_shape": "ramp",
                "ramp_length": 3,
                "betas": {"age": 0.004},
                "missing_rate": 0.1,
            },
        },
    }
    trial = simulate_trial(spec, 11)
    data = trial.patients.merge(trial.clusters, on="cluster").merge(
        trial.implementation, on=["cluster", "period"], how="left"
    )
    fid = trial.truth["fidelity"]
    data["treat"] = (data["start_period"] <= data["period"]).astype(float)
    data["fid"] = ((data["fidelity"] - fid["mean"]) / fid["sd"]).fillna(0.0)
    return trial, data


def test_stepped_wedge_design_and_fidelity(big_patient_trial) -> None:
    trial, data = big_patient_trial
    starts = trial.clusters["start_period"]
    assert starts.notna().all() and starts.min() == 2 and starts.nunique() == 7
    assert (data.loc[data["period"] == 1, "treat"] == 0).all()
    imp = trial.implementation.merge(trial.clusters, on="cluster")
    assert len(imp) == int((9 - starts).sum())  # exactly the treated cells
    assert (imp["period"] >= imp["start_period"]).all()
    assert imp["fidelity"].between(0, 1).all() and imp["fidelity"].std() > 0.05


def test_glm_recovers_bernoulli_truth(big_patient_trial) -> None:
    trial, data = big_patient_trial
    truth = trial.truth["outcomes"]["y"]
    x = pd.DataFrame(
        {
            "const": 1.0,
            "treat": data["treat"],
            "treat_alignment": data["treat"] * data["alignment"],
            "treat_fidelity": data["treat"] * data["fid"],
            "age": data["age"],
            "comorbidity": data["comorbidity"],
        }
    )
    offset = np.asarray(truth["trend"])[data["period"] - 1]
    fit = sm.GLM(data["y"].astype(float), x, family=sm.families.Binomial(), offset=offset).fit()
    expected = {
        "const": truth["intercept"],
        "treat": truth["treatment_effect"],
        "treat_alignment": truth["alignment_interaction"],
        "treat_fidelity": truth["fidelity_interaction"],
        "age": truth["betas"]["age"],
        "comorbidity": truth["betas"]["comorbidity"],
    }
    for name, value in expected.items():
        assert within(fit.params[name], value, fit.bse[name]), (name, fit.params[name], value)
    # mu puts the baseline rate at period 1 at the covariate centres (age 75, comorbidity 2)
    assert truth["intercept"] == pytest.approx(np.log(0.3 / 0.7) - 0.02 * 75 - 0.15 * 2)


def test_ols_recovers_lognormal_truth_with_ramp_and_missingness(big_patient_trial) -> None:
    trial, data = big_patient_trial
    truth = trial.truth["outcomes"]["los"]
    assert truth["ramp_length"] == 3 and "rho" not in truth
    share_missing = data["los"].isna().mean()
    assert within(share_missing, 0.1, np.sqrt(0.09 / len(data)))
    d = data.dropna(subset=["los"])
    exposure = (d["period"] - d["start_period"] + 1).clip(lower=0, upper=3)
    x = pd.get_dummies(exposure, prefix="e", dtype=float).drop(columns="e_0")
    x = x.assign(const=1.0, age=d["age"], comorbidity=d["comorbidity"])
    y = np.log(d["los"]) - np.asarray(truth["trend"])[d["period"] - 1]
    fit = sm.OLS(y, x).fit()
    # exposure-time effects follow the ramp h(e) = min(e / 3, 1) times theta = -0.5
    for e in (1, 2, 3):
        assert within(fit.params[f"e_{e}"], -0.5 * e / 3, fit.bse[f"e_{e}"]), e
    assert within(fit.params["age"], 0.004, fit.bse["age"])
    assert within(fit.params["comorbidity"], 0.0, fit.bse["comorbidity"])
    assert within(fit.params["const"] + 75 * 0.004, np.log(5.0), fit.bse["const"])
    assert within(np.sqrt(fit.scale), 0.7, 0.7 / np.sqrt(2 * len(d)))


def test_negative_binomial_counts_with_exposure_in_cba_design() -> None:
    spec = {
        "design": "controlled_before_after",
        "clusters_per_site": [20, 20],
        "periods": 12,
        "schedule": {"start": 7, "controls": 20},
        "patients": {"per_period": 100, "mean_los": 6.0},
        "survey": OFF,
        "fidelity": OFF,
        "outcomes": {
            "incidents": {
                **NO_RE,
                "family": "negative_binomial",
                "level": "cluster_period",
                "baseline": 8.0,
                "phi": 5.0,
                "trend": {"type": "none"},
                "treatment_effect": -0.2,
            }
        },
    }
    trial = simulate_trial(spec, 5)
    assert trial.patients is None and trial.survey is None and trial.implementation is None
    starts = trial.clusters["start_period"]
    assert starts.isna().sum() == 20 and set(starts.dropna()) == {7}
    cp = trial.cluster_periods.merge(trial.clusters, on="cluster")
    assert abs(cp["bed_days"].sum() / cp["n"].sum() - 6.0) < 0.1
    treat = (cp["start_period"] <= cp["period"]).fillna(False).astype(float)
    x = pd.DataFrame({"const": 1.0, "treat": treat})
    offset = np.log(cp["bed_days"] / 1000)
    fit = sm.NegativeBinomial(cp["incidents"].astype(float), x, offset=offset).fit(disp=0)
    assert within(fit.params["const"], np.log(8.0), fit.bse["const"])
    assert within(fit.params["treat"], -0.2, fit.bse["treat"])
    assert within(fit.params["alpha"], 1 / 5.0, fit.bse["alpha"])
    # empirical untreated rate per 1000 bed-days; NB2 variance of the total: sum(m + m^2 / phi)
    control = cp[treat == 0]
    m = 8.0 * control["bed_days"] / 1000
    se_log_rate = np.sqrt((m + m**2 / 5.0).sum()) / m.sum()
    rate = 1000 * control["incidents"].sum() / control["bed_days"].sum()
    assert within(np.log(rate), np.log(8.0), se_log_rate)


def test_ar1_cluster_period_effects_in_its_design() -> None:
    spec = {
        "design": "interrupted_time_series",
        "clusters_per_site": [4],
        "periods": 500,
        "schedule": {"start": 250},
        "patients": {"per_period": 1},
        "survey": OFF,
        "fidelity": OFF,
        "outcomes": {
            "y": {
                "family": "gaussian",
                "sd_cluster_period": 0.5,
                "cluster_period_structure": "ar1",
                "rho": 0.6,
            }
        },
    }
    trial = simulate_trial(spec, 2)
    assert list(trial.clusters["start_period"]) == [250] * 4
    w = np.array(list(trial.truth["outcomes"]["y"]["cluster_period_effects"].values()))
    assert trial.truth["outcomes"]["y"]["rho"] == 0.6
    lag1 = np.mean([np.corrcoef(row[:-1], row[1:])[0, 1] for row in w])
    assert abs(lag1 - 0.6) < 0.05
    assert abs(w.std() - 0.5) < 0.05


@pytest.fixture(scope="module")
def survey_trial():
    spec = {
        "clusters_per_site": [30, 30],
        "periods": 4,
        "schedule": {"baseline": 1, "every": 1, "per_step": 20},
        "patients": {"per_period": 1},
        "write_alignment": True,
        "survey": {"reverse": ["q2"], "missing_rate": 0.05},
    }
    return simulate_trial(spec, 4)


def test_alignment_is_standardised_and_matches_latent_gaps(survey_trial) -> None:
    truth = survey_trial.truth
    std = np.array([a["standardised"] for a in truth["alignment"].values()])
    assert abs(std.mean()) < 1e-8 and abs(std.std(ddof=1) - 1) < 1e-8
    eta = truth["latent_priorities"]["eta"]["1"]
    for cluster, a in truth["alignment"].items():
        gap = np.subtract(*(list(eta[cluster][r].values()) for r in ("managerial", "clinical")))
        assert abs(a["raw"] + np.sqrt(np.mean(gap**2))) < 1e-8
    assert np.allclose(survey_trial.clusters["alignment"], std, atol=1e-5)


def test_survey_likert_values_and_signal(survey_trial) -> None:
    s = survey_trial.survey
    items = [f"q{k}" for k in range(1, 15)]
    values = s[items].to_numpy(dtype=float)
    observed = values[~np.isnan(values)]
    assert set(np.unique(observed)) == {1, 2, 3, 4, 5}
    assert within(np.isnan(values).mean(), 0.05, np.sqrt(0.05 * 0.95 / values.size))
    assert s["respondent"].is_unique
    corr = s[items].astype(float).corr()
    assert corr.loc["q1", "q2"] < -0.2 < 0.2 < corr.loc["q1", "q3"]  # q2 is reverse-coded
    # descriptive alignment from the wave-1 answers tracks the true alignment
    answered = s.assign(q2=6 - s["q2"])
    answered["kind"] = np.where(s["role"].isin(["doctor", "nurse", "ahp"]), "c", "m")
    domains = survey_trial.truth["survey"]["domains"]
    for domain, qs in domains.items():
        answered[domain] = answered[qs].astype(float).mean(axis=1)
    means = answered[answered["wave"] == 1].groupby(["cluster", "kind"])[list(domains)].mean()
    gap = means.xs("m", level="kind") - means.xs("c", level="kind")
    score = -np.sqrt((gap**2).mean(axis=1))
    true = pd.Series({c: a["raw"] for c, a in survey_trial.truth["alignment"].items()})
    assert score.corr(true[score.index]) > 0.6


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"design": "controlled_before_after", "schedule": {"starts": [3] * 7}}, "design"),
        ({"schedule": {"starts": [1, 2, 3, 4, 5, 6, 7]}}, "2..16"),
        ({"schedule": {"starts": [2, 3]}}, "entries"),
        ({"outcomes": {"y": {"famly": "bernoulli"}}}, "outcomes.y.famly"),
        ({"patients": {"per_perod": 3}}, "patients.per_perod"),
        ({"outcomes": {"y": {"family": "bernoulli", "level": "cluster_period"}}}, "counts"),
    ],
)
def test_invalid_specs_are_rejected(change: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        simulate_trial(change, 1)
