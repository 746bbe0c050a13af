"""Randomisation (permutation) inference: clusters re-assigned to the trial's sequences.

The start periods of the clusters are permuted across clusters (a stepped wedge keeps its
sequences, a controlled before-after design its number of controls) and the effect re-estimated
with :class:`~qialign.robustness.fast_estimator.FixedEffects` each time. With T_b the estimate
under assignment b and T_0 the observed one, the two-sided p-value is

- exact, when the distinct assignments number at most ``permutations``: #{b: |T_b| >= |T_0|} / B
  over all B of them (the observed one included), i.e. (1 + #{others}) / (1 + B - 1);
- Monte Carlo otherwise: (1 + #{b: |T_b| >= |T_0|}) / (1 + B) over B random assignments;

one formula, (1 + extreme others) / (1 + others).

Interval by test inversion under a constant effect theta0 on the link scale: y - theta0 X_0 is
free of the effect, and theta_hat is linear in y, so T_b(theta0) = T_b - theta0 c_b with
c_b = theta_hat(X_0, X_b); the interval is the set of theta0 whose p-value exceeds 1 - level.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

import numpy as np

from qialign.robustness.fast_estimator import FixedEffects

#: grid of the test inversion: points, and half-width in SDs of the permutation distribution
GRID_POINTS, GRID_SDS = 2001, 8.0


@dataclass(frozen=True)
class PermutationResult:
    estimate: float
    p_value: float
    lower: float
    upper: float
    assignments: int
    exact: bool


def distinct_assignments(starts: np.ndarray) -> int:
    """The number of distinct permutations of the multiset ``starts``: J! / prod(m_k!)."""
    out = math.factorial(len(starts))
    for m in Counter(starts.tolist()).values():
        out //= math.factorial(m)
    return out


def _multiset_permutations(values: list) -> list[tuple]:
    """Every distinct ordering of ``values`` (sorted first), depth-first."""
    if not values:
        return [()]
    out = []
    for v in sorted(set(values)):
        rest = list(values)
        rest.remove(v)
        out += [(v, *tail) for tail in _multiset_permutations(rest)]
    return out


def assignments(starts: np.ndarray, limit: int, rng: np.random.Generator) -> tuple[np.ndarray, bool]:
    """Re-assignments of ``starts`` (one row each, the observed first) and whether they are all
    of them (exact) rather than ``limit`` random ones."""
    starts = np.asarray(starts, dtype=float)
    if distinct_assignments(starts) <= limit:
        rows = [np.array(p) for p in _multiset_permutations(starts.tolist())]
        others = [r for r in rows if not np.array_equal(r, starts)]
        return np.vstack([starts, *others]), True
    random = np.vstack([rng.permutation(starts) for _ in range(limit)])
    return np.vstack([starts, random]), False


def _p_values(T: np.ndarray, T0: np.ndarray) -> np.ndarray:
    """Two-sided p per column of T (rows: the assignments other than the observed) against T0."""
    tol = 1e-12 * np.maximum(1.0, np.abs(T0))
    return (1 + (np.abs(T) >= np.abs(T0) - tol).sum(axis=0)) / (1 + T.shape[0])


def permutation_test(
    fe: FixedEffects, starts: np.ndarray, clusters: np.ndarray, limit: int, seed: int, level: float
) -> PermutationResult:
    """The permutation p-value and test-inversion interval of the effect of assignment ``starts``."""
    rng = np.random.default_rng(seed)
    rows, exact = assignments(starts, limit, rng)
    X = fe.treatment(rows, clusters)
    a = fe.estimate(X)
    c = fe.estimate(X, y=X[0])
    keep = np.isfinite(a)
    keep[0] = False
    a_b, c_b, t0 = a[keep], c[keep], a[0]
    p = float(_p_values(a_b[:, None], np.array([t0]))[0])
    spread = np.std(a_b) if len(a_b) > 1 else 1.0
    grid = t0 + np.linspace(-GRID_SDS, GRID_SDS, GRID_POINTS) * max(spread, 1e-6)
    inside = grid[_p_values(a_b[:, None] - grid[None, :] * c_b[:, None], t0 - grid) > 1 - level]
    lower, upper = (inside.min(), inside.max()) if len(inside) else (np.nan, np.nan)
    return PermutationResult(float(t0), p, float(lower), float(upper), int(keep.sum()) + 1, exact)
