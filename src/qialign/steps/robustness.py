"""The robustness step of one outcome: the variants set against the primary, permutation and
placebo checks, power-scaling prior sensitivity and the verdict
(``results/<trial>/<outcome>/robustness/``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from qialign.config import load_trial_config, models_for
from qialign.data.io import read_results_csv, read_results_parquet
from qialign.errors import QialignError
from qialign.families import FAMILIES
from qialign.inference.posterior_io import load_posterior
from qialign.models.identification import unidentified_terms
from qialign.models.spec import ModelSpec
from qialign.progress import say
from qialign.results import FIT_FILES, FitRecord, interval_label
from qialign.robustness.battery import battery, battery_outcomes, variant_model, without_transition
from qialign.robustness.fast_estimator import FixedEffects, cluster_period_summaries, start_periods
from qialign.robustness.files import INFERENCE_COLUMNS, ROBUSTNESS_FILES, SENSITIVITY_COLUMNS, VARIANT_COLUMNS
from qialign.robustness.permutation import PermutationResult, permutation_test
from qialign.robustness.placebo import Placebo, placebo_in_space, placebo_in_time
from qialign.robustness.power_scaling import prior_sensitivity
from qialign.robustness.verdict import VERDICT_ESTIMANDS, compare, verdict
from qialign.steps.fit import fit_seed

ESTIMATOR = "cluster + period fixed-effects WLS on link-scale cluster-period summaries"


def unidentified(cfg: dict, outcome: str, model: dict, root: Path, cells: pd.DataFrame) -> list[str]:
    """The terms of a variant the data do not identify (its estimate would come from the prior),
    checked on its own cells as the validate step checks the configured models."""
    prepared = json.loads((root / "prepared.json").read_text())
    trial = {**cfg, "covariates": prepared["covariates"]}
    spec = ModelSpec.from_config(model, outcome, cfg["outcomes"][outcome], trial, table=prepared["table"])
    own = without_transition(cells) if model["exclude_transition"] else cells
    return unidentified_terms(own, spec)


def variants_table(cfg: dict, outcome: str, root: Path, cells: pd.DataFrame) -> pd.DataFrame:
    """VARIANT_COLUMNS rows of the primary and each variant (link-scale effect and gamma); a
    variant with unidentified terms is marked unreliable and says so in its label."""
    primary = models_for(cfg, outcome)[0]
    fits = [("primary", primary, primary.get("label") or primary["id"])]
    fits += [(v.aspect, variant_model(cfg, outcome, v), v.label) for v in battery(cfg, outcome)[0]]
    link = FAMILIES[cfg["outcomes"][outcome]["family"]].link_scale
    frames = []
    for aspect, model, label in fits:
        est = read_results_csv(root / model["id"] / FIT_FILES["estimates"])
        est = est[est["estimand"].isin(VERDICT_ESTIMANDS) & (est["scale"] == link)]
        reliable = FitRecord.read(root / model["id"] / FIT_FILES["record"]).reliable
        missing = unidentified(cfg, outcome, model, root, cells) if aspect != "primary" else []
        if missing:
            label = f"{label} (not identified by the data: {', '.join(missing)})"
        frames.append(est.assign(aspect=aspect, label=label, reliable=bool(reliable) and not missing))
    table = pd.concat(frames, ignore_index=True).assign(disagrees="")
    return compare(table[list(VARIANT_COLUMNS)])


def _row(
    check: str, description: str, result: PermutationResult | None, note: str, scale: str, prob: float
) -> dict:
    values = (
        {
            "estimate": result.estimate,
            "p_value": result.p_value,
            "lower": result.lower,
            "upper": result.upper,
            "assignments": result.assignments,
            "exact": result.exact,
        }  # fmt: skip
        if result
        else dict.fromkeys(("estimate", "p_value", "lower", "upper", "assignments", "exact"), np.nan)
    )
    return {"check": check, "description": description, "estimator": ESTIMATOR, "scale": scale,
            "interval": interval_label(prob, "ci"), "note": note, **values}  # fmt: skip


def inference_table(cfg: dict, outcome: str, cells: pd.DataFrame) -> pd.DataFrame:
    """INFERENCE_COLUMNS rows: the permutation test, then the placebo checks."""
    rob, prob = cfg["robustness"], float(cfg["interval"]["prob"])
    family = cfg["outcomes"][outcome]["family"]
    scale = FAMILIES[family].link_scale
    seed = fit_seed(cfg["seed"], outcome, "permutation")
    cp = cluster_period_summaries(cells, family)
    starts = start_periods(cp)
    if len(set(starts.tolist())) < 2:
        why = "one sequence only (an interrupted time series): no re-assignment changes who is treated"
        words = "clusters re-assigned to sequences"
        return pd.DataFrame([_row(c, words, None, why, scale, prob) for c in ("permutation", "placebo_time")])
    fe = FixedEffects.of(cp)
    result = permutation_test(fe, starts.to_numpy(), starts.index.to_numpy(), rob["permutations"], seed, prob)
    note = (
        "clusters were randomised: the design's own inference"
        if rob["randomised"]
        else "not randomised: a sensitivity check, not the design's own inference"
    )
    rows = [_row("permutation", "clusters re-assigned to sequences", result, note, scale, prob)]
    checks: list[Placebo] = [placebo_in_time(cp, rob["placebo_shift"], rob["permutations"], seed, prob)]
    if cfg["design"] == "controlled_before_after":
        checks.append(placebo_in_space(cp, rob["permutations"], seed, prob))
    rows += [_row(c.check, c.description, c.result, c.reason, scale, prob) for c in checks]
    return pd.DataFrame(rows)[list(INFERENCE_COLUMNS)]


def robustness_step(config_path: str | Path, outcome: str, root: Path, out_dir: Path) -> dict:
    """Write ROBUSTNESS_FILES for ``outcome`` into ``out_dir`` from the fits and cells under
    ``root`` (results/<trial>/<outcome>); returns the verdict."""
    cfg = load_trial_config(config_path)
    if outcome not in battery_outcomes(cfg):
        raise QialignError(
            f"{cfg['id']}: outcome '{outcome}' is not in the robustness battery (robustness.outcomes)"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    cells = read_results_parquet(root / "cells.parquet")
    say("comparing the variants with the primary")
    compared = variants_table(cfg, outcome, root, cells)
    compared.to_csv(out_dir / ROBUSTNESS_FILES["variants"], index=False)
    say(f"permutation and placebo checks ({cfg['robustness']['permutations']} re-assignments)")
    inference_table(cfg, outcome, cells).to_csv(out_dir / ROBUSTNESS_FILES["inference"], index=False)
    say("power-scaling prior sensitivity of the primary")
    tree, _ = load_posterior(root / models_for(cfg, outcome)[0]["id"] / FIT_FILES["posterior"])
    sens = prior_sensitivity(tree, cfg["robustness"]["sensitivity_threshold"])
    sens[list(SENSITIVITY_COLUMNS)].to_csv(out_dir / ROBUSTNESS_FILES["sensitivity"], index=False)
    result = verdict(compared)
    skipped = [
        {"aspect": s.aspect, "alternative": s.alternative, "reason": s.reason}
        for s in battery(cfg, outcome)[1]
    ]
    record = {**result, "outcome": outcome, "skipped": skipped}
    (out_dir / ROBUSTNESS_FILES["verdict"]).write_text(json.dumps(record, indent=2) + "\n")
    return record
