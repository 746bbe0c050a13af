"""Sample-size search: the smallest integer n at which a non-decreasing power reaches a target."""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["smallest_reaching"]


def smallest_reaching(
    achieved: Callable[[int], float], target: float, start: int = 1, limit: int = 100_000
) -> int:
    """Smallest n >= ``start`` with ``achieved(n) >= target``, for ``achieved`` non-decreasing in n.

    Doubling from ``start`` brackets the answer, bisection finds it: O(log n) evaluations.
    GLS power is non-decreasing in clusters (each adds information; a t df of clusters - 2 grows
    too) and in patients per cluster-period (the covariance of cell means falls). Raises
    ValueError when n up to ``limit`` does not reach the target.
    """
    if achieved(start) >= target:
        return start
    lo, hi = start, start + 1  # achieved(lo) < target throughout
    while achieved(hi) < target:
        if hi >= limit:
            raise ValueError(f"no n up to {limit} reaches power {target}")
        lo, hi = hi, min(limit, start + 2 * (hi - start))
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if achieved(mid) >= target else (mid, hi)
    return hi
