"""Placebo checks: an intervention that did not happen should show no effect.

- in time: only the control cluster-periods are kept and every cluster that starts is given a
  fake start ``shift`` periods before its real one, inside its control periods;
- in space (controlled before-after designs): only the control clusters are kept and half of
  them (seeded) are treated as if they had started at the median real start.

Each fake effect is estimated with the fast fixed-effects estimator and tested by permutation
(:func:`qialign.robustness.permutation.permutation_test`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from qialign.robustness.fast_estimator import FixedEffects, start_periods
from qialign.robustness.permutation import PermutationResult, permutation_test


@dataclass(frozen=True)
class Placebo:
    """One placebo check: its name, words, and the test (None with the reason it was not run)."""

    check: str
    description: str
    result: PermutationResult | None
    reason: str = ""


def _test(cp: pd.DataFrame, fake: pd.Series, limit: int, seed: int, level: float) -> PermutationResult | None:
    data = cp.assign(treated=(cp["period"] >= cp["cluster"].map(fake)).astype(int))
    fe = FixedEffects.of(data)
    clusters = fake.index.to_numpy()
    if not np.isfinite(fe.estimate(fe.treatment(fake.to_numpy(), clusters))[0]):
        return None
    return permutation_test(fe, fake.to_numpy(), clusters, limit, seed, level)


def placebo_in_time(cp: pd.DataFrame, shift: int, limit: int, seed: int, level: float) -> Placebo:
    """Fake starts ``shift`` periods early, on the control cluster-periods only."""
    words = f"start moved {shift} period{'s' if shift > 1 else ''} earlier, control periods only"
    control = cp[cp["treated"] == 0]
    fake = start_periods(cp).reindex(sorted(control["cluster"].unique())) - shift
    result = _test(control, fake, limit, seed, level)
    reason = (
        "" if result else "the fake starts leave no control periods to compare (fixed effects absorb them)"
    )
    return Placebo("placebo_time", words, result, reason)


def placebo_in_space(cp: pd.DataFrame, limit: int, seed: int, level: float) -> Placebo:
    """Half of the control clusters treated as if they had started at the median real start."""
    starts = start_periods(cp)
    controls = starts[~np.isfinite(starts)].index.to_numpy()
    words = "control clusters treated as if they had started"
    if len(controls) < 2:
        return Placebo("placebo_space", words, None, f"{len(controls)} control cluster(s): at least 2 needed")
    rng = np.random.default_rng(seed)
    chosen = rng.choice(controls, size=len(controls) // 2, replace=False)
    median_start = float(np.median(starts[np.isfinite(starts)]))
    fake = pd.Series(np.where(np.isin(controls, chosen), median_start, np.inf), index=controls)
    result = _test(cp[cp["cluster"].isin(controls)], fake, limit, seed, level)
    return Placebo("placebo_space", words, result, "" if result else "fixed effects absorb the fake start")
