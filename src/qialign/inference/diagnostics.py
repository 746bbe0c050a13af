"""Convergence diagnostics against the trial's thresholds (config ``diagnostics``).

Checked on the reported parameters (not the raw non-centred z's): rank-normalised split R-hat
(max <= r_hat_max), bulk and tail ESS (min >= ess_bulk_min, ess_tail_min), divergent transitions
(<= divergences_max) and E-BFMI per chain (min >= ebfmi_min), all via ArviZ 1 (``azs.summary`` with
``round_to="none"``, ``azs.bfmi``). MCSE of the mean and SD are reported alongside; the table
written for the results folder adds the trial's interval (config ``interval``: prob and kind,
columns ``<interval_label>_lb`` / ``_ub``, e.g. ``eti90_lb``).
"""

from __future__ import annotations

import arviz_stats as azs
import numpy as np
import pandas as pd

from qialign.config import schema_defaults
from qialign.results import interval_label

REPORTED = (
    "mu",
    "b_trend",
    "sd_trend",
    "beta",
    "treatment_effect",
    "theta_e",
    "slope_change",
    "b_season",
    "alignment_main",
    "alignment_interaction",
    "fidelity_interaction",
    "sd_site",
    "sd_cluster",
    "sd_cluster_period",
    "rho",
    "sd_treatment",
    "sigma",
    "phi",
    "alignment",  # the survey's latent alignment in a joint model (propagation: joint)
)


def reported_vars(idata) -> list[str]:
    post = idata["posterior"]
    return [v for v in REPORTED if v in post.data_vars]


def summary_table(idata) -> pd.DataFrame:
    """ArviZ's per-parameter mean, sd, ESS, R-hat and MCSE of the reported parameters, unrounded
    (no interval: that is the trial's, :func:`diagnostics_table`)."""
    names = reported_vars(idata)
    stats = azs.summary(idata, var_names=names, kind="stats", round_to="none")[["mean", "sd"]]
    diagnostics = azs.summary(idata, var_names=names, kind="diagnostics", round_to="none")
    return pd.DataFrame(pd.concat([stats, diagnostics], axis=1))


def interval_table(idata, interval: dict) -> pd.DataFrame:
    """The reported parameters' ``interval`` (prob, kind: eti or hdi) limits, columns
    ``<interval_label>_lb`` / ``_ub`` (``eti90_lb``)."""
    prob, kind = float(interval["prob"]), interval["kind"]
    summ = azs.summary(
        idata, var_names=reported_vars(idata), kind="stats", ci_prob=prob, ci_kind=kind, round_to="none"
    )
    label = interval_label(prob, kind)
    return pd.DataFrame(summ[[f"{label}_lb", f"{label}_ub"]])


def diagnose(idata, thresholds: dict | None = None) -> tuple[bool, list[str], dict]:
    """Return (ok, problems, details); details hold the per-parameter summary table."""
    th = {**schema_defaults("diagnostics"), **(thresholds or {})}
    summ = summary_table(idata)
    div = int(np.asarray(idata["sample_stats"]["diverging"]).sum())
    try:
        bfmi = np.atleast_1d(np.asarray(azs.bfmi(idata)["energy"]))
    except (KeyError, ValueError):  # energy missing (e.g. other samplers)
        bfmi = np.array([np.nan])
    n_draws = int(idata["posterior"].sizes["draw"] * idata["posterior"].sizes["chain"])
    details = {
        "summary": summ,
        "divergences": div,
        "divergence_rate": div / n_draws,
        "ebfmi": bfmi.tolist(),
        "r_hat_max": float(summ["r_hat"].max()),
        "ess_bulk_min": float(summ["ess_bulk"].min()),
        "ess_tail_min": float(summ["ess_tail"].min()),
        "mcse_mean_max": float(summ["mcse_mean"].max()),
        "thresholds": th,
    }
    problems = []
    if summ["r_hat"].isna().all():  # one chain (e.g. the others were in a minor mode): no R-hat
        chains = idata["posterior"].sizes["chain"]
        problems.append(f"R-hat not computable from {chains} chain(s): convergence is unchecked")
    elif not details["r_hat_max"] <= th["r_hat_max"]:
        worst = summ["r_hat"].idxmax()
        problems.append(f"R-hat {details['r_hat_max']:.3f} > {th['r_hat_max']} ({worst})")
    if not details["ess_bulk_min"] >= th["ess_bulk_min"]:
        worst = summ["ess_bulk"].idxmin()
        problems.append(f"bulk ESS {details['ess_bulk_min']:.0f} < {th['ess_bulk_min']} ({worst})")
    if not details["ess_tail_min"] >= th["ess_tail_min"]:
        worst = summ["ess_tail"].idxmin()
        problems.append(f"tail ESS {details['ess_tail_min']:.0f} < {th['ess_tail_min']} ({worst})")
    divergent, low_bfmi = div > th["divergences_max"], np.nanmin(bfmi) < th["ebfmi_min"]
    if divergent:
        problems.append(f"{div} divergent transition(s) > {th['divergences_max']}")
    if low_bfmi:
        problems.append(f"E-BFMI {np.nanmin(bfmi):.2f} < {th['ebfmi_min']}")
    # the sampler's geometry (what smaller steps address), apart from mixing (R-hat, ESS)
    details["geometry_ok"] = not (divergent or low_bfmi)
    return not problems, problems, details


def diagnostics_table(details: dict, idata, interval: dict) -> pd.DataFrame:
    """Per-parameter table for the results folder: mean, sd, the trial's ``interval`` of the
    posterior ``idata`` (:func:`interval_table`), ESS, R-hat, MCSE (``details['summary']``)."""
    summ = details["summary"]
    limits = interval_table(idata, interval).reindex(summ.index)
    out = pd.concat([summ[["mean", "sd"]], limits, summ.drop(columns=["mean", "sd"])], axis=1)
    out.index.name = "parameter"
    return out.reset_index()
