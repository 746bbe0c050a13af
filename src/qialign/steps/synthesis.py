"""The synthesis step: pool the configured trials' ward effects and regress them on alignment.

Reads each trial's fit (posterior, record) and alignment scores (:mod:`qialign.synthesis.inputs`),
fits the model (:mod:`qialign.synthesis.run`) and writes ``SYNTHESIS_FILES`` into the out folder:
estimates.csv (ESTIMATE_COLUMNS, Bayesian and meta-regression rows), wards.csv (WARD_COLUMNS),
posterior.nc and synthesis.json (what was pooled from which files, settings, diagnostics).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import yaml

from qialign.config import load_trials
from qialign.data.io import sha256_file
from qialign.errors import QialignError
from qialign.inference.posterior_io import save_posterior
from qialign.progress import say
from qialign.provenance import git_commit, package_versions
from qialign.results import (
    CONDITIONAL,
    ESTIMATE_COLUMNS,
    NEW_CLUSTER,
    PROBABILITY,
    SD,
    SHARE,
    SYNTHESIS_FILES,
    WARD_COLUMNS,
)
from qialign.synthesis.config import SCALE_NAMES, load_synthesis
from qialign.synthesis.inputs import TrialInput, trial_input, ward_table
from qialign.synthesis.run import SynthesisResult, run_synthesis

#: the ``trial`` of the synthesis's estimates.csv rows
SYNTHESIS_ID = "synthesis"


def synthesis_model_id(block: dict) -> str:
    """``synthesis_common`` or ``synthesis_within`` (the ``model`` column)."""
    return f"synthesis_{block['alignment']}"


def load_block(config_path: Path, trials_dir: Path) -> tuple[dict, dict[str, dict]]:
    """The checked synthesis block of a workflow config and the configs of its trials."""
    config = yaml.safe_load(Path(config_path).read_text()) or {}
    listed = list(config.get("trials") or [])
    named = list((config.get("synthesis") or {}).get("trials") or {})
    trials = load_trials(trials_dir, [t for t in named if t in listed])
    block = load_synthesis(config, trials, str(config_path))
    if block is None:
        raise QialignError(f"{config_path}: no synthesis block")
    return block, trials


def estimate_rows(res: SynthesisResult, block: dict) -> pd.DataFrame:
    """The Bayesian and meta-regression rows as ESTIMATE_COLUMNS."""
    model = synthesis_model_id(block)
    ids = {"trial": SYNTHESIS_ID, "outcome": block["scale"], "model": model}
    bayes = res.bayes.assign(
        **ids, approach="bayesian", method="bayes_synthesis", comparable_to="", reference=False
    )
    freq = res.freq.assign(
        **ids, approach="frequentist", method="meta_regression_reml_kh", comparable_to="", reference=True
    )
    rows = pd.concat([bayes, freq], ignore_index=True)
    # pooled ward effects are conditional (each trial's cluster effects) and for a new ward;
    # SDs, shares and probabilities are not effects (blank, as in a trial's estimates)
    effect = ~rows["scale"].isin([SD, SHARE, PROBABILITY])
    rows["conditioning"] = np.where(effect, CONDITIONAL, "")
    rows["population"] = np.where(effect, NEW_CLUSTER, "")
    rows.loc[rows["approach"] == "frequentist", "comparable_to"] = rows["estimand"]  # the same estimand
    return rows[list(ESTIMATE_COLUMNS)]


def ward_rows(res: SynthesisResult, inputs: list[TrialInput]) -> pd.DataFrame:
    post = res.idata["posterior"]
    z_post = np.asarray(post["alignment_z"]).mean(axis=(0, 1))
    fitted = (np.asarray(post["mu"])[..., None] + np.asarray(post["beta"])[..., None] * res.data.a).mean(
        axis=(0, 1)
    )
    out = ward_table(inputs).assign(alignment_z=res.data.a, alignment_z_posterior=z_post, fitted=fitted)
    return out[list(WARD_COLUMNS)]


def _describe(cfg: dict, outcome: str) -> dict:
    """What the page says of a pooled trial: title, synthetic, design, the outcome's family and label."""
    spec = cfg["outcomes"][outcome]
    return {
        "title": cfg["title"],
        "synthetic": cfg["synthetic"],
        "design": cfg["design"],
        "family": spec["family"],
        "label": spec.get("label") or outcome,
    }


def _record(block: dict, trials: dict, inputs: list[TrialInput], res: SynthesisResult) -> dict:
    return {
        "block": block,
        "model": synthesis_model_id(block),
        "trials": [
            {
                "trial": t.trial,
                "outcome": t.outcome,
                "model": t.model,
                "wards": t.wards,
                **_describe(trials[t.trial], t.outcome),
                "unscored": t.unscored,
                "reliable": t.record.reliable,
                "problems": t.record.problems,
                "seed": t.record.seed,
                "git_commit": t.record.git_commit,
                "data": t.record.data,
                "alignment_propagation": t.record.alignment_propagation,
                "files": {k: {"path": p, "sha256": sha256_file(p)} for k, p in t.files.items()},
            }
            for t in inputs
        ],  # fmt: skip
        "standardisation": {"centre": res.data.centre.tolist(), "scale": res.data.scale.tolist()},
        "meta_regression": {
            k: v for k, v in dataclasses.asdict(res.metareg).items() if k in ("tau2", "qe", "r2", "f", "df")
        },  # fmt: skip
        **res.record,
        "versions": package_versions(),
        "git_commit": git_commit(),
    }


def synthesis_step(config_path: Path, trials_dir: Path, results: Path, out_dir: Path) -> dict:
    """Run the synthesis of ``config_path``'s block over ``results/<trial>``; write SYNTHESIS_FILES."""
    block, trials = load_block(config_path, trials_dir)
    inputs = [trial_input(results, t, pick, trials[t], block["scale"]) for t, pick in block["trials"].items()]
    trial_idx = np.concatenate([[i] * len(t.wards) for i, t in enumerate(inputs)])
    say(f"pooling {len(trial_idx)} wards of {len(inputs)} trials ({block['scale']}, {block['alignment']})")
    try:
        res = run_synthesis(
            [t.m for t in inputs], [t.S for t in inputs], np.concatenate([t.a for t in inputs]),
            np.concatenate([t.se for t in inputs]), trial_idx, block, SCALE_NAMES[block["scale"]],
        )  # fmt: skip
    except ValueError as exc:
        raise QialignError(f"{config_path}: synthesis: {exc}") from None
    out_dir.mkdir(parents=True, exist_ok=True)
    estimate_rows(res, block).to_csv(out_dir / SYNTHESIS_FILES["estimates"], index=False)
    ward_rows(res, inputs).to_csv(out_dir / SYNTHESIS_FILES["wards"], index=False)
    fitted = SimpleNamespace(
        idata=res.idata,
        reliable=res.record["reliable"],
        retried=False,
        problems=res.record["problems"],
        timings=res.record["timings"],
        sampler=block["sampler"],
    )  # what save_posterior reads of a fit
    save_posterior(fitted, out_dir / SYNTHESIS_FILES["posterior"], attrs={"model": synthesis_model_id(block)})
    record = _record(block, trials, inputs, res)
    (out_dir / SYNTHESIS_FILES["record"]).write_text(json.dumps(record, indent=2, default=str) + "\n")
    say(f"synthesis: r_hat max {res.record['r_hat_max']:.3f}, {res.record['divergences']} divergence(s)")
    return record
