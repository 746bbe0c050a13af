"""Simulate healthcare QI trials with a known truth (DESIGN.md sections 3 and 4).

For individual i in cluster j (site k) at period t, with X_jt = 1[start_j <= t]::

    g(E[y]) = mu + f(t) + Z beta + X_jt h(e_jt) (theta + gamma A_j + delta_j + kappa F_jt)
              + X_jt (theta_e - theta) + u_k + v_j + w_jt

(theta_e - theta: ``exposure_shape: profile`` only, the effect's deviation at exposure time e from
theta, their mean.)

A_j is the true clinical-managerial alignment and F_jt the delivery fidelity, each standardised
(unweighted mean 0, sample SD 1; F over treated cells).  ``mu`` is set so that the natural-scale
``baseline`` holds at period 1, at the covariate centres (the spec means) and zero random effects.
Families: gaussian (identity), lognormal (log y ~ N(lp, sigma^2)), bernoulli (logit), poisson and
negative binomial (log link; NB2 var = m + m^2 / phi; cluster-period counts have mean
exp(lp) * exposure / per).  Survey: see ``_priorities`` and ``_survey``.

Random streams: ``SeedSequence(seed).spawn(5 + n_outcomes)`` gives independent generators, in
order 0 schedule, 1 latent priorities, 2 survey, 3 fidelity, 4 patients (cluster sizes, counts,
covariates, bed-days), 5 + i outcome i (in spec order).  Within a stream the draws follow the code
order, so output is bit-reproducible and e.g. switching off the survey leaves outcomes unchanged.
"""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import expit, logit

from qialign.studies.simulate_spec import DEFAULT_SPEC, LINKS, TRUTH_KEYS, SpecError, load_spec, resolve_spec
from qialign.studies.simulate_survey import ROLE_TYPES, _domain_items, _priorities, _survey

COVARIATES = ("age", "comorbidity")
FLOAT_FORMAT = "%.6g"


@dataclass
class SimulatedTrial:
    """The simulated tables (None when the spec asks for none) and the true parameters."""

    clusters: pd.DataFrame
    patients: pd.DataFrame | None
    cluster_periods: pd.DataFrame | None
    survey: pd.DataFrame | None
    implementation: pd.DataFrame | None
    truth: dict

    def write(self, out_dir: Path) -> list[Path]:
        """Write ``<table>.csv`` for every table present and ``truth.json``; return the paths."""
        out_dir.mkdir(parents=True, exist_ok=True)
        paths = []
        for name in ("clusters", "patients", "cluster_periods", "survey", "implementation"):
            table = getattr(self, name)
            if table is not None:
                paths.append(out_dir / f"{name}.csv")
                table.to_csv(paths[-1], index=False, float_format=FLOAT_FORMAT, lineterminator="\n")
        paths.append(out_dir / "truth.json")
        paths[-1].write_text(json.dumps(self.truth, indent=1) + "\n")
        return paths


def _start_periods(spec: dict, n: int, rng: np.random.Generator) -> list[int | None]:
    sched, periods, design = spec["schedule"], spec["periods"], spec["design"]
    if sched["starts"] is not None:
        starts = [None if s is None else int(s) for s in sched["starts"]]
        if len(starts) != n:
            raise SpecError(f"schedule.starts has {len(starts)} entries for {n} clusters")
    elif design == "stepped_wedge":
        starts = [sched["baseline"] + 1 + (i // sched["per_step"]) * sched["every"] for i in range(n)]
    else:
        start = periods // 2 + 1 if sched["start"] is None else int(sched["start"])
        controls = 0 if design == "interrupted_time_series" else sched["controls"]
        controls = n // 2 if controls is None else int(controls)
        starts = [start] * (n - controls) + [None] * controls
    if sched["randomise_order"]:
        starts = [starts[i] for i in rng.permutation(n)]
    given = [s for s in starts if s is not None]
    if any(not 2 <= s <= periods for s in given):
        raise SpecError(f"start periods must lie in 2..{periods} (a baseline period first)")
    rules = {
        "stepped_wedge": len(given) == n and len(set(given)) >= 2,
        "controlled_before_after": 0 < len(given) < n and len(set(given)) == 1,
        "interrupted_time_series": len(given) == n and len(set(given)) == 1,
    }
    if not rules[design]:
        raise SpecError(f"start periods {starts} do not make a {design} design")
    return starts


def _standardise(x: np.ndarray) -> np.ndarray:
    """(x - mean) / sd with the unweighted mean and the sample SD (ddof = 1)."""
    return (x - x.mean()) / x.std(ddof=1)


def _fidelity(spec: dict, treated: np.ndarray, rng: np.random.Generator):
    """Fidelity_jt = expit(logit(mean) + a_j + e_jt), rounded to 3 dp; NaN for untreated cells."""
    f = spec["fidelity"]
    level = rng.normal(logit(f["mean"]), f["sd_cluster"], size=treated.shape[0])
    noise = rng.normal(0.0, f["sd_noise"], size=treated.shape)
    return np.where(treated, np.round(expit(level[:, None] + noise), 3), np.nan)


def _truncated_normal(rng: np.random.Generator, p: dict, size: int) -> np.ndarray:
    x = rng.normal(p["mean"], p["sd"], size)
    while (bad := (x < p["min"]) | (x > p["max"])).any():
        x[bad] = rng.normal(p["mean"], p["sd"], int(bad.sum()))
    return x


def _cluster_period_effects(o: dict, shape: tuple[int, int], rng: np.random.Generator):
    """w_jt exchangeable N(0, sd^2), or AR(1): w_jt = rho w_j,t-1 + N(0, sd^2 (1 - rho^2))."""
    sd = o["sd_cluster_period"]
    if o["cluster_period_structure"] == "exchangeable":
        return rng.normal(0.0, sd, size=shape)
    rho = o["rho"]
    w = rng.normal(0.0, 1.0, size=shape) * sd
    w[:, 1:] *= np.sqrt(1.0 - rho**2)
    for t in range(1, shape[1]):
        w[:, t] += rho * w[:, t - 1]
    return w


def _trend(trend: dict, periods: int) -> np.ndarray:
    """f(t) with f(1) = 0: linear s(t-1); nonlinear adds amplitude sin(2 pi (t-1) / cycle)."""
    t = np.arange(periods, dtype=float)
    kind = trend["type"]
    if kind == "vector":
        values = np.asarray(trend["values"], dtype=float)
        if values.shape != (periods,):
            raise SpecError(f"trend.values needs {periods} values")
        return values
    f = np.zeros(periods) if kind == "none" else trend["slope"] * t
    if kind == "nonlinear":
        f = f + trend["amplitude"] * np.sin(2 * np.pi * t / trend["cycle"])
    return f


def _link(family: str, value: float) -> float:
    link = LINKS[family]
    return float(logit(value) if link == "logit" else np.log(value) if link == "log" else value)


def _draw(family: str, lp: np.ndarray, o: dict, scale: np.ndarray | float, rng):
    """One response per linear predictor; ``scale`` multiplies the mean of counts (exposure)."""
    if family == "gaussian":
        return lp + rng.normal(0.0, o["sigma"], lp.size)
    if family == "lognormal":
        return np.exp(lp + rng.normal(0.0, o["sigma"], lp.size))
    if family == "bernoulli":
        return (rng.random(lp.size) < expit(lp)).astype(float)
    mean = np.exp(lp) * scale
    if family == "poisson":
        return rng.poisson(mean).astype(float)
    # NB2 as a gamma-Poisson mixture: var = mean + mean^2 / phi
    return rng.poisson(rng.gamma(o["phi"], mean / o["phi"])).astype(float)


@dataclass
class _Layout:
    """Sites, clusters and the treatment schedule (cluster x period arrays)."""

    sites: list[str]
    site_index: np.ndarray
    clusters: list[str]
    starts: list[int | None]
    period: np.ndarray
    treated: np.ndarray
    exposure_time: np.ndarray


def _layout(spec: dict, rng: np.random.Generator) -> _Layout:
    per_site = spec["clusters_per_site"]
    sites = [f"{spec['site_prefix']}{k + 1}" for k in range(len(per_site))]
    site_index = np.repeat(np.arange(len(per_site)), per_site)
    clusters = [f"{spec['cluster_prefix']}{j + 1}" for j in range(site_index.size)]
    starts = _start_periods(spec, len(clusters), rng)
    start = np.array([np.inf if s is None else s for s in starts])
    period = np.arange(1, spec["periods"] + 1)
    treated = start[:, None] <= period[None, :]
    exposure_time = np.where(treated, period[None, :] - start[:, None] + 1, 0)
    return _Layout(sites, site_index, clusters, starts, period, treated, exposure_time)


def _fidelity_table(spec: dict, lay: _Layout, rng: np.random.Generator):
    """(standardised fidelity per cell, 0 where untreated; implementation table; its truth)."""
    f_std = np.zeros(lay.treated.shape)
    if not spec["fidelity"]["enabled"]:
        return f_std, None, None
    values = _fidelity(spec, lay.treated, rng)[lay.treated]
    f_std[lay.treated] = _standardise(values)
    cells = np.argwhere(lay.treated)
    implementation = pd.DataFrame(
        {"cluster": np.array(lay.clusters)[cells[:, 0]], "period": cells[:, 1] + 1, "fidelity": values}
    )
    return f_std, implementation, {"mean": values.mean(), "sd": values.std(ddof=1)}


def _patients(spec: dict, lay: _Layout, rng: np.random.Generator) -> dict:
    """Patients per cell, their cell, covariates and the cells' bed-days."""
    p = spec["patients"]
    # cluster means: per_period * m_j / mean(m), m_j lognormal, so per_period is their mean
    size = np.exp(rng.normal(0.0, p["sd_log_cluster_size"], len(lay.clusters)))
    size = p["per_period"] * size / size.mean()
    n_cell = rng.poisson(size[:, None], size=lay.treated.shape)
    n_total = int(n_cell.sum())
    cell_of = np.repeat(np.arange(n_cell.size), n_cell.ravel())
    covariates = {
        "age": np.round(_truncated_normal(rng, p["age"], n_total)),
        "comorbidity": np.minimum(
            rng.poisson(p["comorbidity"]["mean"], n_total), p["comorbidity"]["max"]
        ).astype(float),
    }
    noise = np.exp(rng.normal(0.0, p["sd_log_bed_days"], lay.treated.shape))
    bed_days = np.where(n_cell > 0, np.maximum(np.round(n_cell * p["mean_los"] * noise), 1), 0)
    centres = {"age": p["age"]["mean"], "comorbidity": p["comorbidity"]["mean"]}
    return {
        "n_cell": n_cell,
        "cell_of": cell_of,
        "covariates": covariates,
        "bed_days": bed_days,
        "centres": centres,
    }


def _outcome_truth(o: dict, lay: _Layout, mu: float, f, effects: dict) -> dict:
    """The true values of one outcome (``TRUTH_KEYS`` and the drawn effects)."""
    family = o["family"]
    optional = {
        "rho": o["cluster_period_structure"] == "ar1",
        "ramp_length": o["exposure_shape"] == "ramp",
        "exposure_effects": o["exposure_shape"] == "profile",
        "sigma": family in ("gaussian", "lognormal"),
        "phi": family == "negative_binomial",
        "exposure": o["level"] == "cluster_period",
        "per": o["level"] == "cluster_period",
    }
    clusters = lay.clusters
    return {
        "family": family,
        "link": LINKS[family],
        **{key: o[key] for key in TRUTH_KEYS},
        **{key: o[key] for key, wanted in optional.items() if wanted},
        "treatment_effect_natural": o["treatment_effect"]
        if family == "gaussian"
        else np.exp(o["treatment_effect"]),
        "intercept": mu,
        "betas": o["betas"] if o["level"] == "patient" else {},
        "trend": f.tolist(),
        "cluster_effects": dict(zip(clusters, effects["effect"].tolist(), strict=True)),
        "site_effects": dict(zip(lay.sites, effects["u"].tolist(), strict=True)),
        "cluster_intercepts": dict(zip(clusters, effects["v"].tolist(), strict=True)),
        "cluster_period_effects": dict(zip(clusters, effects["w"].tolist(), strict=True)),
    }


def exposure_profile(o: dict, lay: _Layout) -> tuple[dict, np.ndarray]:
    """``exposure_shape: profile``: the effect theta_e per exposure time 1..E of the trial (a dict)
    and each cell's deviation theta_e - mean_e theta_e (0 untreated); the mean is the TATE."""
    values = np.asarray(o["exposure_effects"], float)
    levels = np.arange(1, int(lay.exposure_time.max()) + 1)
    theta_e = values[np.minimum(levels, len(values)) - 1]
    dev = np.concatenate([[0.0], theta_e - theta_e.mean()])[lay.exposure_time]
    return dict(zip(levels.tolist(), theta_e.tolist(), strict=True)), dev


def _outcome(o: dict, lay: _Layout, pat: dict, a_std, f_std, rng: np.random.Generator):
    """One outcome's column (patient rows or cells) and its truth; draws in a fixed order."""
    family, betas, mu = o["family"], o["betas"], o["intercept"]
    if mu is None:
        mu = _link(family, o["baseline"]) - sum(betas[c] * pat["centres"][c] for c in COVARIATES)
    f = _trend(o["trend"], len(lay.period))
    u = rng.normal(0.0, o["sd_site"], len(lay.sites))
    v = rng.normal(0.0, o["sd_cluster"], len(lay.clusters))
    delta = rng.normal(0.0, o["sd_treatment"], len(lay.clusters))
    w = _cluster_period_effects(o, lay.treated.shape, rng)
    shape, dev = np.ones(lay.treated.shape), 0.0
    if o["exposure_shape"] == "ramp":
        shape = np.minimum(lay.exposure_time / o["ramp_length"], 1.0)
    if o["exposure_shape"] == "profile":
        theta_e, dev = exposure_profile(o, lay)  # truth: theta_e and their mean
        o = {**o, "treatment_effect": float(np.mean(list(theta_e.values()))), "exposure_effects": theta_e}
    effect = o["treatment_effect"] + o["alignment_interaction"] * a_std + delta
    cell = (
        mu
        + f[None, :]
        + u[lay.site_index][:, None]
        + v[:, None]
        + w
        + o["alignment_main"] * a_std[:, None]
        + lay.treated * shape * (effect[:, None] + o["fidelity_interaction"] * f_std)
        + dev
    )
    if o["level"] == "patient":
        lp = cell.ravel()[pat["cell_of"]] + sum(betas[c] * pat["covariates"][c] for c in COVARIATES)
        y = _draw(family, lp, o, 1.0, rng)
    else:
        y = _draw(family, cell.ravel(), o, pat["bed_days"].ravel() / o["per"], rng)
    y[rng.random(y.size) < o["missing_rate"]] = np.nan
    if o["decimals"] is not None:
        y = np.round(y, o["decimals"])
    column = pd.array(y, dtype="Int64") if family not in ("gaussian", "lognormal") else y
    return column, _outcome_truth(o, lay, mu, f, {"effect": effect, "u": u, "v": v, "w": w})


def _priorities_truth(lay: _Layout, domains: dict, scale, eta) -> dict:
    clusters = lay.clusters
    return {
        "domains": list(domains),
        "misalignment_scale": dict(zip(clusters, scale.tolist(), strict=True)),
        "eta": {
            str(w + 1): {
                c: {
                    kind: dict(zip(domains, eta[w, j, r].tolist(), strict=True))
                    for r, kind in enumerate(ROLE_TYPES)
                }
                for j, c in enumerate(clusters)
            }
            for w in range(eta.shape[0])
        },
    }


def _base_tables(lay: _Layout, pat: dict, periods: int) -> tuple[dict, dict]:
    """Patient-row and cluster-period columns before the outcomes are added."""
    cl_of, t_of = np.divmod(pat["cell_of"], periods)
    patient_cols: dict[str, Any] = {
        "id": np.arange(1, len(pat["cell_of"]) + 1),
        "cluster": np.array(lay.clusters)[cl_of],
        "period": t_of + 1,
        **{c: pat["covariates"][c].astype(int) for c in COVARIATES},
    }
    cp_cols: dict[str, Any] = {
        "cluster": np.repeat(lay.clusters, periods),
        "period": np.tile(lay.period, len(lay.clusters)),
        "n": pat["n_cell"].ravel(),
        "bed_days": pat["bed_days"].ravel().astype(int),
    }
    return patient_cols, cp_cols


def simulate_trial(spec: dict, seed: int) -> SimulatedTrial:
    """Simulate every table of one trial from ``spec`` (see DEFAULT_SPEC) and ``seed``."""
    spec = resolve_spec({**spec, "seed": int(seed)})
    names = list(spec["outcomes"])
    streams = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(5 + len(names))]
    lay = _layout(spec, streams[0])
    domains = _domain_items(spec["survey"]["domains"])
    scale, eta, a_raw = _priorities(spec, len(lay.clusters), len(domains), streams[1])
    a_std = _standardise(a_raw)
    survey, survey_truth = (
        _survey(spec, lay.clusters, eta, streams[2]) if spec["survey"]["enabled"] else (None, None)
    )
    f_std, implementation, fidelity_truth = _fidelity_table(spec, lay, streams[3])
    pat = _patients(spec, lay, streams[4])
    patient_cols, cp_cols = _base_tables(lay, pat, spec["periods"])
    outcome_truth = {}
    for name, rng in zip(names, streams[5:], strict=True):
        o = spec["outcomes"][name]
        column, outcome_truth[name] = _outcome(o, lay, pat, a_std, f_std, rng)
        (patient_cols if o["level"] == "patient" else cp_cols)[name] = column
        if spec["aggregate"]:  # events per cluster-period (cp rows are cells 0 .. J x T - 1)
            cp_cols[name] = np.bincount(pat["cell_of"], weights=column, minlength=len(cp_cols["n"])).astype(
                int
            )
    clusters_df = pd.DataFrame(
        {
            "cluster": lay.clusters,
            "site": np.array(lay.sites)[lay.site_index],
            "start_period": pd.array(lay.starts, dtype="Int64"),
        }
    )
    if spec["write_alignment"]:
        clusters_df["alignment"] = a_std
    levels = {"cluster_period"} if spec["aggregate"] else {o["level"] for o in spec["outcomes"].values()}
    truth = {
        "synthetic": True,
        "note": spec["note"],
        "seed": int(seed),
        "design": spec["design"],
        "periods": spec["periods"],
        "clusters": {
            c: {"site": lay.sites[k], "start_period": s}
            for c, k, s in zip(lay.clusters, lay.site_index, lay.starts, strict=True)
        },
        "alignment": {
            c: {"raw": r, "standardised": s} for c, r, s in zip(lay.clusters, a_raw, a_std, strict=True)
        },
        "latent_priorities": _priorities_truth(lay, domains, scale, eta),
        "survey": survey_truth,
        "fidelity": fidelity_truth,
        "covariate_centres": pat["centres"],
        "outcomes": outcome_truth,
        "spec": spec,
    }
    return SimulatedTrial(
        clusters=clusters_df,
        patients=pd.DataFrame(patient_cols) if "patient" in levels else None,
        cluster_periods=pd.DataFrame(cp_cols) if "cluster_period" in levels else None,
        survey=survey,
        implementation=implementation,
        truth=_clean(truth),
    )


def _clean(obj: Any) -> Any:
    """JSON-ready copy: numpy scalars to Python, floats to 10 significant digits, NaN to None."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | np.ndarray):
        return [_clean(v) for v in obj]
    if isinstance(obj, bool | np.bool_):
        return bool(obj)
    if isinstance(obj, int | np.integer):
        return int(obj)
    if isinstance(obj, float | np.floating):
        return None if np.isnan(obj) else float(f"{float(obj):.10g}")
    return obj


def simulate_to_dir(spec_path: Path, out_dir: Path) -> None:
    """Simulate the trial in ``spec_path`` (seeded by its ``seed`` key) into ``out_dir``."""
    spec = load_spec(spec_path)
    simulate_trial(spec, int(spec.get("seed", DEFAULT_SPEC["seed"]))).write(Path(out_dir))
