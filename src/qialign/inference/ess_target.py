"""Sample no longer than the diagnostics need: draws set by the ESS target.

The chains run in the background for at most ``draws`` per chain; at the checkpoints
``draws_min``, ``2 draws_min``, ``4 draws_min``, ... (capped at ``draws``) the first d draws of
every chain are diagnosed, and sampling stops at the first checkpoint where bulk and tail ESS
reach the diagnostics' minima and R-hat is under its ceiling. The decision at a checkpoint uses
only the first d draws, which the seed fixes, so the same seed gives the same draws however fast
the machine is (only the sampler's overrun past d, discarded, varies).
"""

from __future__ import annotations

import time
import warnings

import numpy as np
import xarray as xr

from qialign.inference.diagnostics import diagnose

POLL_S = 0.5  # seconds between looks at the running chains


def checkpoints(draws_min: int, draws: int) -> list[int]:
    """draws_min, 2 draws_min, 4 draws_min, ... up to and ending at ``draws``."""
    out, d = [], max(1, min(int(draws_min), int(draws)))
    while d < draws:
        out.append(d)
        d *= 2
    return [*out, int(draws)]


def first_draws(idata: xr.DataTree, d: int) -> xr.DataTree:
    """The first ``d`` draws of every chain, in every group with a draw dimension."""
    groups = {}
    for name, node in idata.children.items():
        ds = node.to_dataset()
        groups[name] = ds.isel(draw=slice(0, d)) if "draw" in ds.dims else ds
    return xr.DataTree.from_dict(groups)


def _completed(idata: xr.DataTree) -> int:
    """Draws every chain has finished (unfinished ones are padded with NaN)."""
    stats = idata["sample_stats"].to_dataset()
    if "diverging" not in stats or stats.sizes.get("draw", 0) == 0:
        return 0
    x = np.asarray(stats["step_size"] if "step_size" in stats else stats["diverging"], float)
    return int(np.isfinite(x).all(axis=0).sum()) if x.ndim == 2 else 0


def _meets(idata: xr.DataTree, th: dict) -> bool:
    _, _, details = diagnose(idata, th)
    return (
        details["ess_bulk_min"] >= th["ess_bulk_min"]
        and details["ess_tail_min"] >= th["ess_tail_min"]
        and details["r_hat_max"] <= th["r_hat_max"]
    )


def _background(compiled, s: dict, th: dict, seed: int, marks: list[int]) -> xr.DataTree:
    """The chains (``cores`` at a time) looked at while they run, cancelled once a checkpoint
    passes. Rerunning to each checkpoint instead would repeat the tuning every time."""
    import nutpie

    run = nutpie.sample(compiled, **_settings(s, seed, int(s["draws"])), blocking=False)
    while True:
        try:
            finished = run.is_finished
        except TimeoutError:  # nutpie 0.16 raises this while the chains are still running
            finished = False
        trace = run.wait() if finished else run.inspect()
        done = int(s["draws"]) if finished else _completed(trace)
        while done >= marks[0]:
            d = marks.pop(0)
            if not marks or _meets(first_draws(trace, d), th):
                if not finished:
                    run.cancel()
                return first_draws(trace, d)
        time.sleep(POLL_S)


def _settings(s: dict, seed: int, draws: int) -> dict:
    keys = {"tune": int, "chains": int, "cores": int, "target_accept": float}
    return {
        **{k: f(s[k]) for k, f in keys.items()},
        "draws": draws,
        "seed": int(seed),
        "progress_bar": False,
        "save_warmup": False,
    }


def sample_to_ess(compiled, s: dict, th: dict, seed: int) -> xr.DataTree:
    """nutpie with sampler settings ``s`` (``draws`` the most per chain, ``draws_min`` the first
    checkpoint), stopped at the first checkpoint whose draws meet the thresholds ``th``."""
    marks = checkpoints(s["draws_min"], s["draws"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _background(compiled, s, th, seed, marks)
