"""Simulate healthcare QI trials with a known truth (DESIGN.md sections 3 and 4).

For individual i in cluster j (site k) at period t, with X_jt = 1[start_j <= t]::

    g(E[y]) = mu + f(t) + Z beta + X_jt h(e_jt) (theta + gamma A_j + delta_j + kappa F_jt)
              + u_k + v_j + w_jt

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

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from scipy.special import expit, logit

from qialign.errors import QialignError


class SpecError(QialignError, ValueError):
    """A simulation spec that cannot be simulated (printed by the CLI without a traceback)."""


DESIGNS = ("stepped_wedge", "controlled_before_after", "interrupted_time_series")
LINKS = {
    "gaussian": "identity",
    "lognormal": "log",
    "bernoulli": "logit",
    "poisson": "log",
    "negative_binomial": "log",
}
COVARIATES = ("age", "comorbidity")
ROLE_TYPES = ("clinical", "managerial")
FLOAT_FORMAT = "%.6g"

DEFAULT_SPEC: dict[str, Any] = {
    "seed": 1,
    "design": "stepped_wedge",
    "note": "SYNTHETIC data simulated by qialign.simulate; no real patients or staff.",
    "periods": 16,
    "clusters_per_site": [4, 3],
    "cluster_prefix": "W",
    "site_prefix": "H",
    "schedule": {
        "starts": None,  # explicit start period per cluster (null = never starts)
        "baseline": 2,  # stepped wedge: periods before the first start
        "every": 2,  # stepped wedge: periods between steps
        "per_step": 1,  # stepped wedge: clusters starting at each step
        "start": None,  # CBA / ITS: common start period (default periods // 2 + 1)
        "controls": None,  # CBA: number of never-starting clusters, the last ones (default J // 2)
        "randomise_order": False,
    },
    "write_alignment": False,
    "patients": {
        "per_period": 100.0,
        "sd_log_cluster_size": 0.2,
        "age": {"mean": 75.0, "sd": 12.0, "min": 18, "max": 105},
        "comorbidity": {"mean": 2.0, "max": 10},
        "mean_los": 6.0,
        "sd_log_bed_days": 0.1,
    },
    "alignment": {"sd_priority": 1.0, "misalignment": [0.2, 1.5], "wave_shift_sd": 0.1},
    "survey": {
        "enabled": True,
        "waves": 2,
        "roles": {
            "clinical": {"doctor": [2, 4], "nurse": [4, 8], "ahp": [2, 3]},
            "managerial": {"ward_manager": [1, 2], "matron": [1, 2], "service_manager": [1, 2]},
        },
        "domains": {"patient_safety": 4, "patient_flow": 3, "workload": 4, "learning": 3},
        "reverse": [],
        "sd_respondent": 0.5,
        "discrimination": [1.0, 2.5],
        "thresholds": [-2.0, -0.75, 0.5, 1.75],
        "sd_threshold": 0.3,
        "missing_rate": 0.0,
    },
    "fidelity": {"enabled": True, "mean": 0.6, "sd_cluster": 0.8, "sd_noise": 0.5},
    "outcomes": {"y": {"family": "bernoulli", "baseline": 0.25}},
}

OUTCOME_DEFAULTS: dict[str, Any] = {
    "family": "bernoulli",
    "level": "patient",  # patient | cluster_period (counts with an exposure)
    "baseline": None,  # natural scale at period 1: probability, median, mean or rate per `per`
    "intercept": None,  # link-scale mu; overrides baseline
    "trend": {"type": "linear", "slope": 0.0, "amplitude": 0.0, "cycle": 12.0, "values": None},
    "treatment_effect": 0.0,
    "alignment_main": 0.0,  # baseline difference per SD of alignment (link scale)
    "alignment_interaction": 0.0,
    "fidelity_interaction": 0.0,
    "sd_treatment": 0.1,
    "sd_site": 0.1,
    "sd_cluster": 0.2,
    "sd_cluster_period": 0.1,
    "cluster_period_structure": "exchangeable",  # exchangeable | ar1
    "rho": 0.0,
    "exposure_shape": "step",  # step | ramp
    "ramp_length": 3,
    "betas": {"age": 0.0, "comorbidity": 0.0},
    "sigma": 1.0,
    "phi": 10.0,
    "exposure": "bed_days",
    "per": 1000.0,
    "missing_rate": 0.0,
    "decimals": None,
}
TRUTH_KEYS = (
    "level treatment_effect alignment_main alignment_interaction fidelity_interaction baseline sd_site"
    " sd_cluster"
    " sd_cluster_period cluster_period_structure sd_treatment exposure_shape"
).split()
BASELINES = {"gaussian": 0.0, "lognormal": 1.0, "bernoulli": 0.25, "poisson": 1.0}
_REPLACED = {"roles", "domains", "outcomes"}


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


def _merge(default: dict, given: dict | None, where: str = "") -> dict:
    out = copy.deepcopy(default)
    for key, value in (given or {}).items():
        if key not in default:
            raise SpecError(f"unknown simulation spec key '{where}{key}'")
        if isinstance(default[key], dict) and key not in _REPLACED:
            out[key] = _merge(default[key], value, f"{where}{key}.")
        else:
            out[key] = copy.deepcopy(value)
    return out


def resolve_spec(spec: dict) -> dict:
    """Fill every default into ``spec`` and validate it; unknown keys are errors."""
    out = _merge(DEFAULT_SPEC, spec)
    if out["design"] not in DESIGNS:
        raise SpecError(f"design must be one of {DESIGNS}, got {out['design']!r}")
    outcomes = {}
    for name, given in out["outcomes"].items():
        o = _merge(OUTCOME_DEFAULTS, given, f"outcomes.{name}.")
        family = o["family"]
        if family not in LINKS:
            raise SpecError(f"outcomes.{name}.family must be one of {list(LINKS)}")
        if o["level"] not in ("patient", "cluster_period"):
            raise SpecError(f"outcomes.{name}.level must be patient or cluster_period")
        counts = family in ("poisson", "negative_binomial")
        if o["level"] == "cluster_period" and (not counts or any(o["betas"].values())):
            raise SpecError(f"outcomes.{name}: cluster_period outcomes are counts without betas")
        if o["baseline"] is None and o["intercept"] is None:
            o["baseline"] = BASELINES.get(family, 1.0)
        if o["trend"]["type"] not in ("none", "linear", "nonlinear", "vector"):
            raise SpecError(f"outcomes.{name}.trend.type must be none|linear|nonlinear|vector")
        if o["cluster_period_structure"] not in ("exchangeable", "ar1") or abs(o["rho"]) >= 1:
            raise SpecError(f"outcomes.{name}: cluster_period_structure exchangeable|ar1, |rho|<1")
        if o["exposure_shape"] not in ("step", "ramp"):
            raise SpecError(f"outcomes.{name}.exposure_shape must be step or ramp")
        if o["fidelity_interaction"] and not out["fidelity"]["enabled"]:
            raise SpecError(f"outcomes.{name}.fidelity_interaction needs fidelity.enabled")
        outcomes[name] = o
    out["outcomes"] = outcomes
    return out


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


def _domain_items(domains: dict) -> dict[str, list[str]]:
    """Domains as {domain: [items]}; an integer count k numbers items on from q1."""
    out, k = {}, 0
    for domain, items in domains.items():
        if isinstance(items, int):
            items = [f"q{k + i + 1}" for i in range(items)]
        out[domain] = list(items)
        k += len(items)
    return out


def _priorities(spec: dict, n_clusters: int, n_domains: int, rng: np.random.Generator):
    """Latent priorities eta[wave, cluster, role, domain] and raw alignment.

    eta_clin ~ N(0, s); eta_man = eta_clin + gap, gap_jd ~ N(0, m_j^2), m_j ~ U(lo, hi);
    later waves add N(0, wave_shift_sd) to every eta.  A_raw_j = -sqrt(mean_d gap_jd^2) at wave 1.
    """
    a = spec["alignment"]
    waves = spec["survey"]["waves"]
    scale = rng.uniform(*a["misalignment"], size=n_clusters)
    clinical = rng.normal(0.0, a["sd_priority"], size=(n_clusters, n_domains))
    gap = rng.normal(0.0, 1.0, size=(n_clusters, n_domains)) * scale[:, None]
    eta = np.empty((waves, n_clusters, 2, n_domains))
    eta[0, :, 0], eta[0, :, 1] = clinical, clinical + gap
    for w in range(1, waves):
        eta[w] = eta[w - 1] + rng.normal(0.0, a["wave_shift_sd"], size=eta[w].shape)
    return scale, eta, -np.sqrt((gap**2).mean(axis=1))


def _survey(spec: dict, clusters: list[str], eta: np.ndarray, rng: np.random.Generator):
    """Graded-response Likert answers: P(Y >= k+1) = logistic(a_i (eta + b_resp - tau_ik))."""
    sv = spec["survey"]
    domains = _domain_items(sv["domains"])
    items = [q for qs in domains.values() for q in qs]
    item_domain = np.array([d for d, qs in enumerate(domains.values()) for _ in qs])
    base = np.asarray(sv["thresholds"], dtype=float)
    tau = np.sort(base + rng.normal(0.0, sv["sd_threshold"], size=(len(items), base.size)), axis=1)
    disc = rng.uniform(*sv["discrimination"], size=len(items))
    reverse = np.isin(items, sv["reverse"])
    top = base.size + 1
    meta, answers = [], []
    for w in range(eta.shape[0]):
        for j, cluster in enumerate(clusters):
            for r, kind in enumerate(ROLE_TYPES):
                for group, (lo, hi) in sv["roles"][kind].items():
                    n = int(rng.integers(lo, hi + 1))
                    trait = eta[w, j, r][item_domain] + rng.normal(0.0, sv["sd_respondent"], (n, 1))
                    z = disc * trait + rng.logistic(size=trait.shape)
                    y = 1 + (z[:, :, None] > (disc[:, None] * tau)[None]).sum(axis=2)
                    y = np.where(reverse, top + 1 - y, y).astype(float)
                    y[rng.random(y.shape) < sv["missing_rate"]] = np.nan
                    answers.append(y)
                    meta += [(cluster, group, w + 1)] * n
    table = pd.DataFrame(meta, columns=["cluster", "role", "wave"])
    table.insert(0, "respondent", np.arange(1, len(table) + 1))
    answers_df = pd.DataFrame(np.vstack(answers), columns=items).astype("Int64")
    table = pd.concat([table, answers_df], axis=1)
    truth = {
        "scale": [1, top],
        "domains": domains,
        "reverse": [q for q, rev in zip(items, reverse, strict=True) if rev],
        "sd_respondent": sv["sd_respondent"],
        "items": {
            q: {
                "domain": list(domains)[item_domain[i]],
                "discrimination": disc[i],
                "thresholds": tau[i].tolist(),
            }
            for i, q in enumerate(items)
        },
    }
    return table, truth


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


def simulate_trial(spec: dict, seed: int) -> SimulatedTrial:
    """Simulate every table of one trial from ``spec`` (see DEFAULT_SPEC) and ``seed``."""
    spec = resolve_spec({**spec, "seed": int(seed)})
    names = list(spec["outcomes"])
    streams = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(5 + len(names))]
    periods = spec["periods"]
    per_site = spec["clusters_per_site"]
    sites = [f"{spec['site_prefix']}{k + 1}" for k in range(len(per_site))]
    site_index = np.repeat(np.arange(len(per_site)), per_site)
    clusters = [f"{spec['cluster_prefix']}{j + 1}" for j in range(site_index.size)]
    n_clusters = len(clusters)
    starts = _start_periods(spec, n_clusters, streams[0])
    start = np.array([np.inf if s is None else s for s in starts])
    period = np.arange(1, periods + 1)
    treated = start[:, None] <= period[None, :]
    exposure_time = np.where(treated, period[None, :] - start[:, None] + 1, 0)

    domains = _domain_items(spec["survey"]["domains"])
    scale, eta, a_raw = _priorities(spec, n_clusters, len(domains), streams[1])
    a_std = _standardise(a_raw)
    survey, survey_truth = None, None
    if spec["survey"]["enabled"]:
        survey, survey_truth = _survey(spec, clusters, eta, streams[2])

    f_std = np.zeros(treated.shape)
    implementation, fidelity_truth = None, None
    if spec["fidelity"]["enabled"]:
        fidelity = _fidelity(spec, treated, streams[3])
        values = fidelity[treated]
        f_std[treated] = _standardise(values)
        cells = np.argwhere(treated)
        implementation = pd.DataFrame(
            {
                "cluster": np.array(clusters)[cells[:, 0]],
                "period": cells[:, 1] + 1,
                "fidelity": values,
            }
        )
        fidelity_truth = {"mean": values.mean(), "sd": values.std(ddof=1)}

    p, rng = spec["patients"], streams[4]
    # cluster means: per_period * m_j / mean(m), m_j lognormal, so per_period is their mean
    size = np.exp(rng.normal(0.0, p["sd_log_cluster_size"], n_clusters))
    size = p["per_period"] * size / size.mean()
    n_cell = rng.poisson(size[:, None], size=treated.shape)
    n_total = int(n_cell.sum())
    cell_of = np.repeat(np.arange(n_cell.size), n_cell.ravel())
    cl_of, t_of = np.divmod(cell_of, periods)
    covariates = {
        "age": np.round(_truncated_normal(rng, p["age"], n_total)),
        "comorbidity": np.minimum(
            rng.poisson(p["comorbidity"]["mean"], n_total), p["comorbidity"]["max"]
        ).astype(float),
    }
    noise = np.exp(rng.normal(0.0, p["sd_log_bed_days"], treated.shape))
    bed_days = np.where(n_cell > 0, np.maximum(np.round(n_cell * p["mean_los"] * noise), 1), 0)
    centres = {"age": p["age"]["mean"], "comorbidity": p["comorbidity"]["mean"]}

    patient_cols: dict[str, Any] = {
        "id": np.arange(1, n_total + 1),
        "cluster": np.array(clusters)[cl_of],
        "period": t_of + 1,
        **{c: covariates[c].astype(int) for c in COVARIATES},
    }
    cp_cols: dict[str, Any] = {
        "cluster": np.repeat(clusters, periods),
        "period": np.tile(period, n_clusters),
        "n": n_cell.ravel(),
        "bed_days": bed_days.ravel().astype(int),
    }
    outcome_truth = {}
    for name, rng in zip(names, streams[5:], strict=True):
        o = spec["outcomes"][name]
        family = o["family"]
        betas = o["betas"]
        mu = o["intercept"]
        if mu is None:
            mu = _link(family, o["baseline"]) - sum(betas[c] * centres[c] for c in COVARIATES)
        f = _trend(o["trend"], periods)
        u = rng.normal(0.0, o["sd_site"], len(sites))
        v = rng.normal(0.0, o["sd_cluster"], n_clusters)
        delta = rng.normal(0.0, o["sd_treatment"], n_clusters)
        w = _cluster_period_effects(o, treated.shape, rng)
        shape = np.ones(treated.shape)
        if o["exposure_shape"] == "ramp":
            shape = np.minimum(exposure_time / o["ramp_length"], 1.0)
        effect = o["treatment_effect"] + o["alignment_interaction"] * a_std + delta
        cell = (
            mu
            + f[None, :]
            + u[site_index][:, None]
            + v[:, None]
            + w
            + o["alignment_main"] * a_std[:, None]
            + treated * shape * (effect[:, None] + o["fidelity_interaction"] * f_std)
        )
        if o["level"] == "patient":
            lp = cell.ravel()[cell_of] + sum(betas[c] * covariates[c] for c in COVARIATES)
            y = _draw(family, lp, o, 1.0, rng)
        else:
            y = _draw(family, cell.ravel(), o, bed_days.ravel() / o["per"], rng)
        y[rng.random(y.size) < o["missing_rate"]] = np.nan
        if o["decimals"] is not None:
            y = np.round(y, o["decimals"])
        column = pd.array(y, dtype="Int64") if family not in ("gaussian", "lognormal") else y
        (patient_cols if o["level"] == "patient" else cp_cols)[name] = column
        natural = o["treatment_effect"] if family == "gaussian" else np.exp(o["treatment_effect"])
        optional = {
            "rho": o["cluster_period_structure"] == "ar1",
            "ramp_length": o["exposure_shape"] == "ramp",
            "sigma": family in ("gaussian", "lognormal"),
            "phi": family == "negative_binomial",
            "exposure": o["level"] == "cluster_period",
            "per": o["level"] == "cluster_period",
        }
        outcome_truth[name] = {
            "family": family,
            "link": LINKS[family],
            **{key: o[key] for key in TRUTH_KEYS},
            **{key: o[key] for key, wanted in optional.items() if wanted},
            "treatment_effect_natural": natural,
            "intercept": mu,
            "betas": betas if o["level"] == "patient" else {},
            "trend": f.tolist(),
            "cluster_effects": dict(zip(clusters, effect.tolist(), strict=True)),
            "site_effects": dict(zip(sites, u.tolist(), strict=True)),
            "cluster_intercepts": dict(zip(clusters, v.tolist(), strict=True)),
            "cluster_period_effects": dict(zip(clusters, w.tolist(), strict=True)),
        }

    clusters_df = pd.DataFrame(
        {
            "cluster": clusters,
            "site": np.array(sites)[site_index],
            "start_period": pd.array(starts, dtype="Int64"),
        }
    )
    if spec["write_alignment"]:
        clusters_df["alignment"] = a_std
    levels = {o["level"] for o in spec["outcomes"].values()}
    truth = {
        "synthetic": True,
        "note": spec["note"],
        "seed": int(seed),
        "design": spec["design"],
        "periods": periods,
        "clusters": {
            c: {"site": sites[k], "start_period": s}
            for c, k, s in zip(clusters, site_index, starts, strict=True)
        },
        "alignment": {
            c: {"raw": r, "standardised": s} for c, r, s in zip(clusters, a_raw, a_std, strict=True)
        },
        "latent_priorities": {
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
        },
        "survey": survey_truth,
        "fidelity": fidelity_truth,
        "covariate_centres": centres,
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


def load_spec(spec_path: Path) -> dict:
    """Read a simulation spec (YAML mapping)."""
    spec = yaml.safe_load(Path(spec_path).read_text()) or {}
    if not isinstance(spec, dict):
        raise SpecError(f"{spec_path}: a simulation spec must be a YAML mapping")
    return spec


def simulate_to_dir(spec_path: Path, out_dir: Path) -> None:
    """Simulate the trial in ``spec_path`` (seeded by its ``seed`` key) into ``out_dir``."""
    spec = load_spec(spec_path)
    simulate_trial(spec, int(spec.get("seed", DEFAULT_SPEC["seed"]))).write(Path(out_dir))
