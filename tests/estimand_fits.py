"""Small real fits for the exact estimand tests, one per family plus an interrupted time series.

Between them they reach every branch of ``qialign.models.estimands``: random treatment effects
and AR(1) cluster-period effects (gaussian), fidelity (lognormal), no cluster-period term and an
HDI (bernoulli), per-patient and per-cell overdispersion and ``better: higher`` (counts), random
treatment effects and an exposure that varies per patient (poisson), a site intercept (negative
binomial), exposure-time indicators with a window and a point (binomial eti), a segmented ITS
with harmonics and covariates (one lognormal series: kappa in log-y units, a geometric-mean trend).
Under ``make mutate`` (which mutates estimands, not the sampler) each is fitted once and kept in
``$QIALIGN_TEST_FIT_CACHE``.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
from functools import cache
from pathlib import Path

from models_sim import simulate
from qialign.inference.fit import fit_model
from qialign.models.spec import simulated_spec

SAMPLER = {"chains": 2, "draws": 100, "tune": 150}
LAX = {"retry": False}
SMALL = dict(n_clusters=8, n_periods=5, n_per_cp=20, seed=3)

#: fit name -> (family, better, model config, simulator options, interval)
FITS = {
    "gaussian": ("gaussian", "lower", {"random_treatment": True, "cluster_period": "ar1"}, {}, {"prob": 0.9}),
    "lognormal": ("lognormal", "lower", {"moderators": ["alignment", "fidelity"]}, {"fidelity": True}, {}),
    "bernoulli": (
        "bernoulli",
        "lower",
        {"cluster_period": "none"},
        {},
        {"prob": 0.8, "kind": "hdi"},
    ),
    "binomial": ("binomial", "lower", {}, {}, {"prob": 0.9}),
    "poisson": (
        "poisson",
        "higher",
        {"overdispersion": "patient", "random_treatment": True},
        {},
        {"prob": 0.5},
    ),
    "negative_binomial": (
        "negative_binomial",
        "lower",
        {"overdispersion": "cell", "site_effect": True},
        {},
        {},
    ),
    "eti": (
        "binomial",
        "lower",
        {"exposure": "eti", "estimand_window": [2, 3], "pte_at": 2, "moderators": []},
        {},
        {"prob": 0.9},
    ),
    "its": (
        "lognormal",
        "lower",
        {"trend": "linear", "slope_change": True, "harmonics": 1, "season_length": 4}
        | {"cluster_period": "none", "site_effect": False, "moderators": []},
        {"design": "cba", "n_periods": 10},
        {"prob": 0.9},
    ),
}


def _fit(name: str):
    family, better, model, sim, _ = FITS[name]
    cells, _, alignment, _ = simulate(family, **{**SMALL, **sim})
    trial: dict = {}
    if model.get("site_effect") is True:  # a site intercept needs three sites (models.build.MIN_SITES)
        cells = cells.assign(site=cells["cluster"].map(lambda c: f"s{int(c[1:]) % 3}"))
    if name == "poisson":  # exposure per patient varies by cluster (patient-days 1, 1.5 or 2)
        days = cells["cluster"].map(lambda c: 1 + int(c[1:]) % 3 / 2)
        cells = cells.assign(exposure=cells["exposure"] * days)
    if name == "its":  # one treated series of the controlled before-after simulation
        first = cells.loc[cells["treated"] == 1, "cluster"].min()
        cells, alignment = cells[cells["cluster"] == first], None
        trial = {"design": "interrupted_time_series", "covariates": ["age"]}
    model = {"id": "m", "covariates": name == "its", **model}
    spec = simulated_spec(family, model, better=better, **trial)
    return fit_model(cells, spec, alignment=alignment, sampler=SAMPLER, diagnostics=LAX, seed=2)


@cache
def cached_fit(name: str):
    """The fit (model object dropped), once per test run, and from ``$QIALIGN_TEST_FIT_CACHE``
    when set (tests copy it, never change it)."""
    cache = os.environ.get("QIALIGN_TEST_FIT_CACHE")
    if not cache:
        return _fit(name)
    path = Path(cache) / f"estimand_fits_{name}.pkl"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(pickle.dumps(dataclasses.replace(_fit(name), model=None)))
    return pickle.loads(path.read_bytes())


def interval(name: str) -> dict:
    return FITS[name][4]
