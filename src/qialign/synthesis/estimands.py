"""The synthesis estimands, from the posterior draws (and the meta-regression's rows beside them).

Per draw s (z: standardised alignment, :mod:`qialign.synthesis.model`):

- pooled_effect mu: the effect for a typical ward at mean alignment (z = 0);
- alignment_slope beta: change in the effect per SD of alignment (across every ward of every
  trial when alignment is ``common``; within trials when ``within``);
- sd_between_trial tau_trial, sd_between_ward tau_ward;
- variance_explained = beta^2 V_z / (beta^2 V_z + tau_ward^2), V_z the variance of the wards' true
  alignment z in that draw: the share of the between-ward effect variance (beyond the trials'
  means) that alignment accounts for;
- predicted_effect_q<NN>: a new ward of a new trial at the NN-th percentile of the wards' measured
  alignment, mu + beta z_q + tau_trial N(0, 1) + tau_ward N(0, 1): a prediction interval;
- prob_beats_trend_bottom_quartile / _top_quartile: P(the new ward's effect is beneficial) for a
  new ward whose alignment is that of a ward drawn at random from the bottom (top) quarter of the
  draw's true alignments.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from qialign.models.estimands import estimand_row
from qialign.results import PROBABILITY, SHARE, interval_label
from qialign.synthesis.metareg import MetaRegression

COLUMNS = ["estimand", "scale", "estimate", "lower", "upper", "interval", "r_hat", "ess_bulk"]
QUARTILES = {"bottom_quartile": (0.0, 0.25), "top_quartile": (0.75, 1.0)}


def quantile_name(q: float) -> str:
    return f"predicted_effect_q{round(100 * q):02d}"


def _row(name: str, scale: str, draws: np.ndarray, prob: float) -> dict:
    """Mean, equal-tailed interval, R-hat and bulk ESS of draws (chain, draw): a trial's estimand row."""
    return estimand_row(name, scale, draws, prob, "eti", refits=1)


def _probability(name: str, p: float) -> dict:
    return {"estimand": name, "scale": PROBABILITY, "estimate": p, "lower": np.nan, "upper": np.nan,
            "interval": "", "r_hat": np.nan, "ess_bulk": np.nan}  # fmt: skip


def _quartile_z(z: np.ndarray, lo: float, hi: float, rng) -> np.ndarray:
    """Per draw (chain, draw, ward), the true z of a ward picked at random between the lo and hi
    quantiles of that draw's wards."""
    ranks = np.argsort(np.argsort(z, axis=-1), axis=-1) / (z.shape[-1] - 1)
    inside = (ranks >= lo) & (ranks <= hi)
    pick = rng.random(z.shape) * inside
    return np.take_along_axis(z, pick.argmax(-1)[..., None], -1)[..., 0]


def bayesian_estimates(post, z_measured: np.ndarray, scale: str, better: str, cfg: dict) -> pd.DataFrame:
    """The estimand table (module docstring) from the posterior group ``post``; ``z_measured`` the
    wards' standardised measured scores (for the prediction percentiles); ``cfg`` the block."""
    prob, rng = float(cfg["interval"]["prob"]), np.random.default_rng(cfg["seed"])
    mu, beta = np.asarray(post["mu"]), np.asarray(post["beta"])
    tau_t, tau_w = np.asarray(post["tau_trial"]), np.asarray(post["tau_ward"])
    # the wards' true alignment drawn given their scores (model: z | a ~ N(z^, v))
    z = np.asarray(post["alignment_z"]) + np.sqrt(np.asarray(post["alignment_z_var"])) * rng.standard_normal(
        np.shape(post["alignment_z"])
    )
    v_z = z.var(axis=-1, ddof=1)
    rows = [
        _row("pooled_effect", scale, mu, prob),
        _row("alignment_slope", scale, beta, prob),
        _row("sd_between_trial", scale, tau_t, prob),
        _row("sd_between_ward", scale, tau_w, prob),
        _row("variance_explained", SHARE, beta**2 * v_z / (beta**2 * v_z + tau_w**2), prob),
    ]

    def new_ward(z_new):
        return (
            mu + beta * z_new + tau_t * rng.standard_normal(mu.shape) + tau_w * rng.standard_normal(mu.shape)
        )

    for q in cfg["predict_at"]:
        rows.append(_row(quantile_name(q), scale, new_ward(np.quantile(z_measured, q)), prob))
    sign = -1 if better == "lower" else 1
    for label, (lo, hi) in QUARTILES.items():
        effect = new_ward(_quartile_z(z, lo, hi, rng))
        rows.append(_probability(f"prob_beats_trend_{label}", float(np.mean(np.sign(effect) == sign))))
    return pd.DataFrame(rows, columns=COLUMNS)


def frequentist_estimates(fit: MetaRegression, scale: str, prob: float) -> pd.DataFrame:
    """The meta-regression's pooled effect and slope (Knapp-Hartung CI), SD and R^2 (no interval)."""
    lo, hi = fit.interval(prob)
    label = interval_label(prob, "ci")
    rows = [
        ["pooled_effect", scale, fit.coef[0], lo[0], hi[0], label],
        ["alignment_slope", scale, fit.coef[1], lo[1], hi[1], label],
        ["sd_between_ward", scale, float(np.sqrt(fit.tau2)), np.nan, np.nan, ""],
        ["variance_explained", SHARE, fit.r2, np.nan, np.nan, ""],
    ]
    out = pd.DataFrame(rows, columns=COLUMNS[:6])
    out["r_hat"], out["ess_bulk"] = np.nan, np.nan
    return out
