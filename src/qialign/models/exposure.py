"""Exposure-time estimands (Kenny et al., Stat Med 2022): the effect at each exposure time e
(periods since a cluster started, 1 = its first intervention period), its average over a window
and its value at one exposure time.

Effect at exposure time e on the link scale (gaussian: in y units), per posterior draw:

- eti: theta_e = theta + dev_e, with sum_e dev_e = 0 over the design's exposure times (so their
  mean is theta, ``treatment_effect``, whose prior SD is effect_sd whatever their number L);
- step / ramp: h(e) theta, h = 1 or min(e / ramp_periods, 1); plus kappa (e - 1) with a slope change.

Estimands of an eti model (names ``qialign.results.TATE`` / ``PTE``, each with ``_natural``):

- tate = mean of theta_e over the exposure times e in ``estimand_window`` [a, b] (default: all),
- pte = theta_k at k = ``pte_at`` (default: the last exposure time L).

All at mean alignment and fidelity, like ``treatment_effect``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from qialign.errors import QialignError
from qialign.families import FAMILIES
from qialign.results import EXPOSURE_EFFECT_COLUMNS, PTE, TATE, interval_label


def window(spec, levels) -> tuple[int, int]:
    """The validated [first, last] exposure times of the TATE: ``estimand_window`` or all levels.

    Both ends and every exposure time between them must be exposure times of the design."""
    levels = [int(x) for x in levels]
    a, b = spec.estimand_window if spec.estimand_window is not None else (levels[0], levels[-1])
    missing = [e for e in range(a, b + 1) if e not in levels]
    if missing:
        shown = missing if len(missing) <= 5 else f"{missing[0]}..{missing[-1]} ({len(missing)} of them)"
        raise QialignError(
            f"models[{spec.id}].estimand_window [{a}, {b}]: exposure time(s) {shown} do not occur "
            f"in the data (treated cluster-periods have exposure times {levels})"
        )
    return a, b


def pte_time(spec, levels) -> int:
    """The validated exposure time of the PTE: ``pte_at`` or the last exposure time."""
    levels = [int(x) for x in levels]
    k = spec.pte_at if spec.pte_at is not None else levels[-1]
    if k not in levels:
        raise QialignError(
            f"models[{spec.id}].pte_at {k} does not occur in the data "
            f"(treated cluster-periods have exposure times {levels})"
        )
    return k


def validate(spec, design) -> None:
    """QialignError before fitting when the window or point is not in the design (eti only)."""
    if spec.exposure == "eti":
        window(spec, design.eti_levels)
        pte_time(spec, design.eti_levels)


def effect_draws(fit) -> tuple[np.ndarray, np.ndarray]:
    """(exposure times, link-scale effect draws (chain, draw, exposure time)), see module doc."""
    post, d, spec = fit.idata["posterior"], fit.design, fit.spec
    levels = np.asarray(d.eti_levels, int)
    if spec.exposure == "eti":
        return levels, np.asarray(post["theta_e"], float) * d.y_scale
    theta = np.asarray(post["treatment_effect"], float)[..., None]
    h = np.minimum(levels / spec.ramp_periods, 1.0) if spec.exposure == "ramp" else np.ones(len(levels))
    eff = theta * h
    if "slope_change" in post:
        eff = eff + np.asarray(post["slope_change"], float)[..., None] * (levels - 1)
    return levels, eff * d.y_scale


def estimand_rows(fit, row) -> list[dict]:
    """tate and pte rows (link and natural scale) of an eti fit; none for other exposures.

    ``row(name, scale, draws)`` makes one estimand row (``qialign.models.estimands``)."""
    if fit.spec.exposure != "eti":
        return []
    fam = FAMILIES[fit.spec.family]
    levels, eff = effect_draws(fit)
    a, b = window(fit.spec, levels)
    k = pte_time(fit.spec, levels)
    tate = eff[..., (levels >= a) & (levels <= b)].mean(-1)
    pte = eff[..., int(np.flatnonzero(levels == k)[0])]
    return [
        row(TATE, fam.link_scale, tate),
        row(f"{TATE}_natural", fam.natural_scale, fam.natural(tate)),
        row(PTE, fam.link_scale, pte),
        row(f"{PTE}_natural", fam.natural_scale, fam.natural(pte)),
    ]


def exposure_effects(fit, bounds, prob: float, kind: str) -> pd.DataFrame:
    """``exposure_effects.csv``: per exposure time the posterior mean and interval on the link and
    natural scale (columns ``EXPOSURE_EFFECT_COLUMNS``); ``bounds(draws, prob, kind)`` -> (2, k)."""
    fam = FAMILIES[fit.spec.family]
    levels, eff = effect_draws(fit)
    nat = fam.natural(eff)
    lo, hi = bounds(eff, prob, kind)
    nlo, nhi = bounds(nat, prob, kind)
    out = pd.DataFrame(
        {
            "exposure_time": levels,
            "scale": fam.link_scale,
            "estimate": eff.mean(axis=(0, 1)),
            "lower": lo,
            "upper": hi,
            "natural_scale": fam.natural_scale,
            "natural_estimate": nat.mean(axis=(0, 1)),
            "natural_lower": nlo,
            "natural_upper": nhi,
            "interval": interval_label(prob, kind),
        }
    )
    return out[list(EXPOSURE_EFFECT_COLUMNS)]
