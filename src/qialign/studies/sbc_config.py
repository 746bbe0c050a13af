"""Settings of a simulate-and-fit study (``config/sbc.yaml``, ``config/power_sim.yaml``).

A study lists the models it checks under ``models:`` (name -> overrides of the top-level keys:
``family``, ``model``, ``parameters``, ``propagation``, ``design``, ...); each model is one flat
settings dict (``DEFAULTS`` <- top level <- its entry, with ``name``). Without ``models:`` the
study has one model, named after its ``family``. The master seed is the study's, shared by its
models; ``replicates`` and ``chunks`` may differ per model (a model's replicate k is the same
whatever its N, so raising one model's N extends its earlier run). Light (yaml only): the
Snakefile reads the model names and chunk counts here.
"""

from __future__ import annotations

import copy
from pathlib import Path

import yaml

from qialign.errors import QialignError
from qialign.families import FAMILIES

DEFAULTS: dict = {
    "seed": 20261126,
    "replicates": 200,
    "chunks": 8,
    "design": {
        "clusters": 12,
        "periods": 7,
        "n": 50,  # patients per cluster-period
        # natural-scale centre of the intercept prior, fixed (not from the data): a probability
        # (binomial), a rate per patient (counts); the continuous families' y is on the model's
        # standardised scale, centre 0
        "baseline": 0.3,
    },
    # a models: entry of a trial config (ModelSpec.from_config); priors: {} overrides the defaults
    "model": {"id": "sbc", "site_effect": False, "cluster_period": "exchangeable"},
    "family": "binomial",
    # plugin: alignment is known data; joint: the survey's latent alignment model in the same graph
    "propagation": "plugin",
    # the simulated survey of a joint model: every respondent answers every item (one wave)
    "survey": {"clinical": 4, "managerial": 2, "domains": 2, "items": 3, "categories": 5},
    "sampler": {"chains": 2, "draws": 1000, "tune": 1000, "target_accept": 0.95, "cores": 1},
    "ranks": {"draws": 199, "bins": 10, "ecdf_simulations": 10000},
    "interval": 0.9,
    # fixed true values (parameter -> value): the other parameters still come from the prior, so the
    # run estimates power at these values (averaged over the nuisance prior) instead of calibration
    "truth": {},
    # a replicate "succeeds" for a parameter when P(parameter > 0) or P(parameter < 0) exceeds this:
    # the success rate is Bayesian assurance (no truth fixed) or simulation-based power (truth fixed)
    "success": 0.975,
    "parameters": ["treatment_effect", "alignment_interaction", "sd_cluster"],
    # pass / fail in summary.csv and the page: both uniformity p-values > uniformity_p and coverage
    # of the central interval within coverage, for these parameters
    "criteria": {
        "parameters": ["treatment_effect", "alignment_interaction"],
        "uniformity_p": 0.01,
        "coverage": [0.87, 0.93],
    },
    "models": {},
}

#: keys a study sets once for all its models
STUDY_KEYS = ("seed", "models")
PROPAGATIONS = ("plugin", "joint")


def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in (over or {}).items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _unknown(raw: dict, where: str) -> list[str]:
    return [f"{where}{k}: unknown key (known: {', '.join(DEFAULTS)})" for k in raw if k not in DEFAULTS]


def _design_problems(cfg: dict) -> list[str]:
    d, problems = cfg["design"], []
    for key, low in (("clusters", 3), ("periods", 2), ("n", 2)):
        if not (isinstance(d[key], int) and d[key] >= low):
            problems.append(f"design/{key}: an integer >= {low}, got {d[key]!r}")
    kind = FAMILIES[cfg["family"]].kind if cfg["family"] in FAMILIES else None
    if kind == "binary" and not 0 < float(d["baseline"]) < 1:
        problems.append(f"design/baseline: a probability in (0, 1), got {d['baseline']!r}")
    if kind == "count" and not float(d["baseline"]) > 0:
        problems.append(f"design/baseline: a rate per patient > 0, got {d['baseline']!r}")
    s = cfg["survey"]
    if cfg["propagation"] == "joint" and not all(isinstance(v, int) and v >= 1 for v in s.values()):
        problems.append(f"survey: positive integers, got {s!r}")
    if cfg["propagation"] == "joint" and s["categories"] < 2:
        problems.append("survey/categories: at least 2 answer categories")
    return problems


def _rank_problems(cfg: dict) -> list[str]:
    r, s, problems = cfg["ranks"], cfg["sampler"], []
    if not (isinstance(r["draws"], int) and r["draws"] >= 1):
        problems.append(f"ranks/draws: an integer L >= 1, got {r['draws']!r}")
    elif int(s["chains"]) * int(s["draws"]) < r["draws"]:
        problems.append(
            f"ranks/draws: L = {r['draws']} thinned draws need at least that many posterior draws "
            f"(sampler: {s['chains']} chains x {s['draws']})"
        )
    if not (isinstance(r["bins"], int) and 2 <= r["bins"] <= r["draws"] + 1):
        problems.append(f"ranks/bins: an integer between 2 and L + 1, got {r['bins']!r}")
    if not 0 < float(cfg["interval"]) < 1:
        problems.append(f"interval: a probability in (0, 1), got {cfg['interval']!r}")
    return problems


def _model_problems(cfg: dict) -> list[str]:
    """Problems of one model's flat settings."""
    problems = _design_problems(cfg) + _rank_problems(cfg)
    if cfg["family"] not in FAMILIES:
        problems.append(f"family: one of {', '.join(FAMILIES)}, got {cfg['family']!r}")
    if cfg["propagation"] not in PROPAGATIONS:
        problems.append(f"propagation: one of {', '.join(PROPAGATIONS)}, got {cfg['propagation']!r}")
    if not 0.5 < float(cfg["success"]) < 1:
        problems.append(f"success: a posterior probability in (0.5, 1), got {cfg['success']!r}")
    if not isinstance(cfg["truth"], dict) or not all(
        isinstance(v, (int, float)) for v in cfg["truth"].values()
    ):
        problems.append(f"truth: a mapping parameter -> number, got {cfg['truth']!r}")
    if not cfg["parameters"]:
        problems.append("parameters: list at least one scalar parameter")
    crit = cfg["criteria"]
    if [p for p in crit["parameters"] if p not in cfg["parameters"]]:
        problems.append("criteria/parameters: every checked parameter must be in parameters")
    if not (isinstance(crit["coverage"], list) and len(crit["coverage"]) == 2):
        problems.append(f"criteria/coverage: [lower, upper], got {crit['coverage']!r}")
    return problems


def _model_entries(raw: dict) -> tuple[dict, list[str]]:
    """name -> entry of ``models:`` (one named after the family when absent), and problems."""
    models = raw.get("models") or {raw.get("family", DEFAULTS["family"]): {}}
    if not isinstance(models, dict):
        return {}, [f"models: a mapping name -> settings, got {models!r}"]
    problems = []
    for name, entry in models.items():
        entry = entry or {}
        if not (isinstance(name, str) and name.isidentifier()):
            problems.append(f"models/{name}: a name of letters, digits and _")
        problems += _unknown(entry, f"models/{name}/")
        problems += [f"models/{name}/{k}: set once for the study" for k in STUDY_KEYS if k in entry]
    return {k: v or {} for k, v in models.items()}, problems


def _count_problems(d: dict) -> list[str]:
    """``replicates`` an integer >= 1, ``chunks`` an integer in 1..replicates."""
    problems = []
    if not (isinstance(d["replicates"], int) and d["replicates"] >= 1):
        problems.append(f"replicates: an integer >= 1, got {d['replicates']!r}")
    elif not (isinstance(d["chunks"], int) and 1 <= d["chunks"] <= d["replicates"]):
        problems.append(f"chunks: an integer between 1 and replicates, got {d['chunks']!r}")
    return problems


def sbc_config(raw: dict | None = None) -> dict:
    """The study's settings: defaults <- ``raw``, checked, with ``models`` = name -> flat settings
    of each model (``name`` included); raise QialignError listing every problem."""
    raw = raw or {}
    entries, problems = _model_entries(raw)
    problems += _unknown(raw, "")
    top = _merge(DEFAULTS, {k: v for k, v in raw.items() if k != "models"})
    problems += _count_problems(top)
    top["models"] = {}
    if not problems:
        for name, entry in entries.items():
            flat = _merge({k: v for k, v in top.items() if k != "models"}, entry) | {"name": name}
            problems += [f"models/{name}/{p}" for p in _count_problems(flat) + _model_problems(flat)]
            top["models"][name] = flat
    if problems:
        raise QialignError("SBC configuration:\n" + "\n".join(f"- {p}" for p in problems))
    return top


def load_sbc_config(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise QialignError(f"{path}: SBC config not found.")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise QialignError(f"{path}: not valid YAML: {exc}") from None
    try:
        return sbc_config(raw)
    except QialignError as exc:
        raise QialignError(f"{path}: {exc}") from None


def model_config(cfg: dict, name: str) -> dict:
    """One model's flat settings; QialignError naming the known models for another name."""
    if name not in cfg["models"]:
        raise QialignError(f"model {name!r}: the study has {', '.join(cfg['models'])}")
    return cfg["models"][name]
