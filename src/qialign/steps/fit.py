"""Fit one outcome x model and write its posterior, estimates, diagnostics and report tables."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from qialign.alignment.debias import MODERATOR_COLUMN
from qialign.alignment.latent import draws_matrix
from qialign.alignment.latent_model import survey_long
from qialign.config import load_trial_config, models_for, sampler_for
from qialign.data import load_trial
from qialign.data.io import read_results_csv, read_results_parquet
from qialign.errors import QialignError
from qialign.ids import sort_ids
from qialign.inference.diagnostics import diagnostics_table
from qialign.inference.fit import FitResult, fit_model
from qialign.inference.posterior_io import save_posterior
from qialign.models.checks import posterior_predictive_check
from qialign.models.estimands import (
    cluster_effects,
    counterfactual,
    counterfactual_by_period,
    estimates,
    exposure_effects,
)
from qialign.models.spec import ModelSpec
from qialign.progress import say
from qialign.provenance import provenance
from qialign.results import FIT_FILES, FitRecord, bayesian_rows
from qialign.robustness.battery import variant_models, without_transition
from qialign.steps.alignment import moderator_alignment
from qialign.waves import file_order, resolve_wave


def fit_seed(master: int, outcome: str, model: str) -> int:
    """A seed per fit derived from the trial's master seed: stable across runs and machines."""
    digest = hashlib.sha256(f"{master}/{outcome}/{model}".encode()).digest()
    return int.from_bytes(digest[:4], "little") % (2**31 - 1)


def model_config(cfg: dict, outcome: str, model_id: str) -> dict:
    """The ``models:`` entry ``model_id`` of ``outcome``, or a variant of its robustness battery."""
    for model in [*models_for(cfg, outcome), *variant_models(cfg, outcome)]:
        if model["id"] == model_id:
            return model
    raise QialignError(f"{cfg['id']}: model '{model_id}' is not fitted for outcome '{outcome}'")


def alignment_propagation(cfg: dict, draws_csv: Path, clusters: list[str]) -> dict:
    """``fit_model`` keywords for the trial's ``alignment.propagation``: nothing for plugin;
    ``alignment_draws`` (``alignment.draws`` evenly spaced rows of the latent posterior draws,
    clusters in ``clusters`` order) for draws; ``latent`` = (survey, wave index) for joint. The wave
    is ``alignment.wave`` by its label, or the first wave (:func:`qialign.waves.resolve_wave`)."""
    al = cfg["alignment"]
    if al["propagation"] == "draws":
        draws = read_results_csv(draws_csv)
        try:
            wave = resolve_wave(al["wave"], file_order(draws))
        except ValueError as exc:
            raise QialignError(f"{draws_csv}: {exc}") from None
        all_draws = draws_matrix(draws, wave, clusters)
        if len(all_draws) < 2 or np.isnan(all_draws).any():
            raise QialignError(
                f"{draws_csv}: no complete alignment draws for wave {wave} and clusters "
                f"{', '.join(clusters)} (propagation: draws needs method: latent)"
            )
        pick = np.unique(np.linspace(0, len(all_draws) - 1, min(int(al["draws"]), len(all_draws))).round())
        return {"alignment_draws": all_draws[pick.astype(int)]}
    if al["propagation"] == "joint":
        survey = survey_long(load_trial(cfg).survey, al, clusters)
        try:
            wave = resolve_wave(al["wave"], survey.waves)
        except ValueError as exc:
            raise QialignError(f"{cfg['data']['survey']}: {exc}") from None
        return {"latent": (survey, survey.waves.index(wave))}
    return {}


def sampler_cores(sampler: dict, threads: int | None) -> dict:
    """The sampler settings with ``cores`` capped at the scheduler's allocation ``threads`` (chains
    beyond it run in turn); what reaches nutpie's or PyMC's ``cores``."""
    if not threads:
        return dict(sampler)
    return {**sampler, "cores": min(int(sampler["cores"]), int(threads))}


def _moderator(cfg: dict, model_cfg: dict, cells, scores: Path) -> tuple:
    """(raw alignment per cluster or None, notes, unscored clusters, ``fit_model`` propagation keywords)."""
    if "alignment" not in model_cfg["moderators"] or cfg["alignment"]["source"] == "none":
        return None, [], [], {}
    clusters = sort_ids(cells["cluster"])
    al = cfg["alignment"]
    alignment, notes, unscored = moderator_alignment(
        scores, al["wave"], clusters, MODERATOR_COLUMN[al["score"]]
    )
    if alignment is None:
        return None, notes, unscored, {}
    draws = alignment_propagation(cfg, scores.parent / "alignment_draws.csv", clusters)
    return alignment, notes, unscored, draws


def fit_tables(fit: FitResult, cfg: dict, ids: dict, propagation: str) -> tuple[dict, dict]:
    """The fit's tables by ``FIT_FILES`` key (estimates, diagnostics, cluster and exposure-time
    effects, counterfactuals, PPC) and the PPC result: what the fit step writes, the one producer
    of their columns."""
    iv = cfg["interval"]
    ppc = posterior_predictive_check(fit, seed=ids["seed"])
    tables = {
        "estimates": bayesian_rows(
            estimates(fit, iv), ids["trial"], ids["outcome"], ids["model"], propagation
        ),
        "diagnostics": diagnostics_table(fit.diagnostics, fit.idata, iv),
        "effects": cluster_effects(fit, iv),
        "exposure_effects": exposure_effects(fit, iv),
        "counterfactual": counterfactual(fit, iv),
        "counterfactual_by_period": counterfactual_by_period(fit, iv),
        "ppc": ppc["table"],
    }
    return tables, ppc


def _write_tables(fit: FitResult, cfg: dict, ids: dict, propagation: str, out_dir: Path) -> dict:
    """Write :func:`fit_tables` under their ``FIT_FILES`` names; returns the PPC."""
    tables, ppc = fit_tables(fit, cfg, ids, propagation)
    for key, table in tables.items():
        table.to_csv(out_dir / FIT_FILES[key], index=False)
    return ppc


def _fit_record(fit: FitResult, ids: dict, moderation: dict, ppc: dict, record: dict, files) -> FitRecord:
    """The fit.json record: ids, seed, reliability, timings, diagnostics, versions, data files."""
    d = fit.diagnostics
    return FitRecord(
        **ids,
        reliable=fit.reliable,
        retried=fit.retried,
        problems=fit.problems,
        notes=moderation["notes"],
        unscored_clusters=moderation["unscored_clusters"],
        timings=fit.timings,
        sampler=fit.sampler,
        divergences=d["divergences"],
        ebfmi=d["ebfmi"],
        r_hat_max=d["r_hat_max"],
        ess_bulk_min=d["ess_bulk_min"],
        ess_tail_min=d["ess_tail_min"],
        attempts=d["attempts"],
        ppc={k: v for k, v in ppc.items() if k != "table"},
        alignment_propagation=moderation["alignment_propagation"],
        alignment_refits=d.get("refits"),
        gamma_modes=d.get("gamma_modes"),
        versions=record["versions"],
        reproducibility=record["reproducibility"],
        git_commit=record["git_commit"],
        data=files,
    )


def fit_step(
    config_path: str | Path,
    outcome: str,
    model_id: str,
    prepared_dir: Path,
    scores: Path,
    out_dir: Path,
    threads: int | None = None,
) -> dict:
    """Fit and write ``posterior.nc``, ``estimates.csv``, ``diagnostics.csv``, ``cluster_effects.csv``,
    ``exposure_effects.csv``,
    ``counterfactual.csv``, ``counterfactual_by_period.csv``, ``ppc.csv`` and ``fit.json`` into
    ``out_dir``. Returns the fit record."""
    cfg = load_trial_config(config_path)
    model_cfg = model_config(cfg, outcome, model_id)
    cells = read_results_parquet(prepared_dir / "cells.parquet")
    if model_cfg["exclude_transition"]:
        cells = without_transition(cells)
    prepared = json.loads((prepared_dir / "prepared.json").read_text())
    # only the covariates the outcome's table has (a ward-month outcome has no patient covariates)
    spec = ModelSpec.from_config(
        model_cfg,
        outcome,
        cfg["outcomes"][outcome],
        {**cfg, "covariates": prepared["covariates"]},
        table=prepared["table"],
    )
    alignment, notes, unscored, propagation = _moderator(cfg, model_cfg, cells, scores)
    seed = fit_seed(cfg["seed"], outcome, model_id)
    sampler = sampler_cores(sampler_for(cfg, model_cfg), threads)
    say(f"fitting {len(cells)} cells, seed {seed}, {sampler['chains']} chains x {sampler['draws']} draws")
    fit = fit_model(
        cells,
        spec,
        alignment=alignment,
        sampler=sampler,
        diagnostics=cfg["diagnostics"],
        seed=seed,
        **propagation,
    )
    say(f"sampled: reliable={fit.reliable} retried={fit.retried} problems={fit.problems}; writing results")
    out_dir.mkdir(parents=True, exist_ok=True)
    record = provenance(cfg, prepared["files"], seed)
    save_posterior(
        fit, out_dir / FIT_FILES["posterior"], attrs={**record, "outcome": outcome, "model": model_id}
    )
    mode = cfg["alignment"]["propagation"] if alignment is not None else "plugin"
    ids = {"trial": cfg["id"], "outcome": outcome, "model": model_id, "seed": seed}
    ppc = _write_tables(fit, cfg, ids, mode, out_dir)
    moderation = {
        "notes": notes,
        "unscored_clusters": unscored,
        "alignment_propagation": mode if alignment is not None else None,
    }
    summary = _fit_record(fit, ids, moderation, ppc, record, prepared["files"])
    summary.write(out_dir / FIT_FILES["record"])
    return summary
