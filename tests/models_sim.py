"""The model tests' trials, made by the project's simulator (``qialign.studies.simulate``) and put
in the shapes the model takes: patient rows in cell form (n = 1) and cluster-period x age-band cells.

eta_ijt = mu + f(t) + beta age_i + X_jt (theta + gamma A_j + kappa F_jt) + u_site + v_j + w_jt,
with A_j the true alignment standardised over clusters (mean 0, SD 1, ddof = 1) exactly as the
model does, F_jt the standardised fidelity (no effect unless ``kappa`` is given) and f linear. The
model's covariate is the age band (<65, 65-79, 80+) of the simulator's continuous age.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from qialign.studies.simulate import simulate_trial

# link-scale truths per family: (mu, theta, gamma, sigma or phi); counts: per patient (exposure 1)
TRUTH = {
    "bernoulli": dict(mu=-0.5, theta=-0.4, gamma=0.3),
    "binomial": dict(mu=-0.5, theta=-0.4, gamma=0.3),
    "gaussian": dict(mu=10.0, theta=-1.5, gamma=1.0, sigma=4.0),
    "lognormal": dict(mu=1.5, theta=-0.25, gamma=0.15, sigma=0.6),
    "poisson": dict(mu=np.log(0.5), theta=-0.3, gamma=0.2),
    "negative_binomial": dict(mu=np.log(0.5), theta=-0.3, gamma=0.2, phi=5.0),
}
# random-effect SDs and the trend on the link scale, multiplied by this (gaussian units are larger)
SCALE = {"gaussian": 4.0}
AGE_BANDS = (-np.inf, 65, 80, np.inf), ("<65", "65-79", "80+")
AGE_CENTRE = 75.0
KEYS = ["cluster", "site", "period", "treated", "exposure_time", "age"]


def _starts(design: str, n_clusters: int, n_periods: int) -> dict:
    """Schedule: stepped wedge starts 2 + floor(j (T - 1) / J) in random order; controlled
    before-after: half start at T // 2 + 1, half never."""
    if design == "stepped_wedge":
        starts = [2 + (j * (n_periods - 1)) // n_clusters for j in range(n_clusters)]
        return {"starts": starts, "randomise_order": True}
    return {"start": n_periods // 2 + 1, "controls": n_clusters // 2, "randomise_order": True}


def trial_spec(family, design, n_clusters, n_periods, n_per_cp, sd, age_effect, kappa, truth) -> dict:
    """The simulator spec of one model-test trial (no survey; fidelity written when kappa is given)."""
    k = SCALE.get(family, 1.0)
    beta_age = age_effect * k / 12.0  # the band steps are about one age SD (12 years) apart
    outcome = {
        "family": "bernoulli" if family == "binomial" else family,
        "intercept": truth["mu"] - beta_age * AGE_CENTRE,  # mu is at the mean age
        "trend": {"type": "linear", "slope": 0.03 * k},
        "treatment_effect": truth["theta"],
        "alignment_interaction": truth["gamma"],
        "fidelity_interaction": kappa or 0.0,
        "sd_treatment": 0.0,
        "sd_site": sd["site"] * k,
        "sd_cluster": sd["cluster"] * k,
        "sd_cluster_period": sd["cp"] * k,
        "betas": {"age": beta_age, "comorbidity": 0.0},
        **{p: truth[p] for p in ("sigma", "phi") if p in truth},
    }
    return {
        "design": "stepped_wedge" if design == "stepped_wedge" else "controlled_before_after",
        "periods": n_periods,
        "clusters_per_site": [n_clusters - n_clusters // 2, n_clusters // 2],
        "cluster_prefix": "c",
        "site_prefix": "s",
        "schedule": _starts(design, n_clusters, n_periods),
        "patients": {"per_period": float(n_per_cp), "sd_log_cluster_size": 0.0, "age": {"mean": AGE_CENTRE}},
        "survey": {"enabled": False},
        "fidelity": {"enabled": kappa is not None},
        "outcomes": {"y": outcome},
    }


def simulate(
    family: str = "bernoulli",
    design: str = "stepped_wedge",
    n_clusters: int = 14,
    n_periods: int = 8,
    n_per_cp: int = 60,
    seed: int = 1,
    sd_site: float = 0.2,
    sd_cluster: float = 0.3,
    sd_cp: float = 0.1,
    age_effect: float = 0.2,
    fidelity: bool = False,
    kappa: float | None = None,
    **overrides,
):
    """Return (cells, rows in cell form, true alignment per cluster, truth: mu theta gamma [sigma
    phi kappa])."""
    truth = {**TRUTH[family], **overrides}
    kappa = 0.0 if fidelity and kappa is None else kappa
    sd = {"site": sd_site, "cluster": sd_cluster, "cp": sd_cp}
    spec = trial_spec(family, design, n_clusters, n_periods, n_per_cp, sd, age_effect, kappa, truth)
    sim = simulate_trial(spec, seed)
    rows = _rows(sim, family)
    align = pd.Series({c: a["raw"] for c, a in sim.truth["alignment"].items()}, name="alignment")
    truth = {**truth, **({"kappa": kappa} if kappa is not None else {})}
    return aggregate(rows, family), to_row_cells(rows, family), align, truth


def _rows(sim, family: str) -> pd.DataFrame:
    """One row per patient: cluster, site, period, treated, exposure time, age band, y (and
    fidelity, exposure 1 for counts)."""
    rows = sim.patients.merge(sim.clusters, on="cluster")
    start = rows["start_period"].astype("float").fillna(np.inf).to_numpy()
    treated = (rows["period"].to_numpy() >= start).astype(int)
    out = pd.DataFrame(
        {
            "cluster": rows["cluster"],
            "site": rows["site"],
            "period": rows["period"],
            "treated": treated,
            "exposure_time": np.where(treated == 1, rows["period"] - start + 1, 0).astype(int),
            "age": pd.cut(rows["age"], AGE_BANDS[0], labels=AGE_BANDS[1], right=False).astype(str),
            "y": rows["y"].astype(float),
        }
    )
    if sim.implementation is not None:
        out = out.merge(sim.implementation, on=["cluster", "period"], how="left")
    if family in ("poisson", "negative_binomial"):
        out["exp"] = 1.0
    return out


def to_row_cells(rows: pd.DataFrame, family: str) -> pd.DataFrame:
    """Row-level table in cell form (n = 1)."""
    out = rows[[c for c in rows if c in KEYS or c == "fidelity"]].copy()
    out["n"] = 1
    y = rows["y"].to_numpy(float)
    if family in ("bernoulli", "binomial"):
        out["events"] = y
    elif family in ("gaussian", "lognormal"):
        ly = np.log(y) if family == "lognormal" else y
        out["sum"], out["sumsq"] = ly, ly**2
    else:
        out["count"], out["exposure"] = y, rows["exp"].to_numpy(float)
    return out


def aggregate(rows: pd.DataFrame, family: str) -> pd.DataFrame:
    """Cluster-period x covariate-pattern cells with the family's sufficient statistics."""
    r = to_row_cells(rows, family)
    stats = [c for c in ("events", "sum", "sumsq", "count", "exposure") if c in r]
    keys = KEYS + (["fidelity"] if "fidelity" in r else [])
    return r.groupby(keys, dropna=False, as_index=False)[["n", *stats]].sum()
