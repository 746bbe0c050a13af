"""Sample no longer than the diagnostics need: draws set by the ESS target.

The chains run in the background for at most ``draws`` per chain. At a checkpoint d (the first is
``draws_min``) the first d draws of every chain are diagnosed, and sampling stops when bulk and
tail ESS reach the diagnostics' minima and R-hat is under its ceiling. Otherwise the next
checkpoint is where the ESS would reach its floor if it grew in proportion to the draws, as it does
for a chain past its warm-up: d * max(floor / ESS) * ``ESS_MARGIN``, at least ``STEP_MIN`` d,
rounded up to ``ROUND_TO`` draws and at most ``draws`` (a fit that reaches 576 at 1,000 draws
stops near 800 rather than at 1,000, and one far short at the first look goes straight on). Every
decision uses only the first d draws, which the seed fixes, so the same seed gives the same draws
however fast the machine is (only the sampler's overrun past d, discarded, varies).
"""

from __future__ import annotations

import time
import warnings

import numpy as np
import xarray as xr

from qialign.inference.diagnostics import diagnose

POLL_S = 0.1  # seconds between looks at the running chains (reading the progress callbacks)
PROGRESS_MS = 100  # how often nutpie reports the chains' progress
ESS_MARGIN = 1.15  # draws beyond the proportional prediction (ESS estimates from few draws are noisy)
STEP_MIN = 1.5  # a later checkpoint has at least this many times the draws (R-hat alone failing)
ROUND_TO = 50  # checkpoints are multiples of this many draws (beyond the first)


def first_checkpoint(draws_min: int, draws: int) -> int:
    """``draws_min``, at least 1 and at most ``draws``."""
    return max(1, min(int(draws_min), int(draws)))


def next_checkpoint(d: int, details: dict, th: dict, draws: int) -> int:
    """The draws to look at after the first ``d`` fell short (``details`` of :func:`diagnose`):
    d * max(ESS floor / ESS) * ESS_MARGIN, at least STEP_MIN d, rounded up to ROUND_TO, at most
    ``draws``."""
    short = max(
        th["ess_bulk_min"] / max(details["ess_bulk_min"], 1.0),
        th["ess_tail_min"] / max(details["ess_tail_min"], 1.0),
    )
    want = d * max(STEP_MIN, ESS_MARGIN * short) if np.isfinite(short) else draws
    return int(min(draws, -(-int(np.ceil(want)) // ROUND_TO) * ROUND_TO))


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


def _meets(idata: xr.DataTree, th: dict) -> tuple[bool, dict]:
    _, _, details = diagnose(idata, th)
    ok = (
        details["ess_bulk_min"] >= th["ess_bulk_min"]
        and details["ess_tail_min"] >= th["ess_tail_min"]
        and details["r_hat_max"] <= th["r_hat_max"]
    )
    return ok, details


def _finished(run) -> bool:
    try:
        return bool(run.is_finished)
    except TimeoutError:  # nutpie 0.16 raises this while the chains are still running
        return False


def concat_chains(traces: list[xr.DataTree]) -> xr.DataTree:
    """Traces of the same model (same draws per chain) as one, chains renumbered in order."""
    if len(traces) == 1:
        return traces[0]
    groups = {}
    for name in traces[0].children:
        parts = [t[name].to_dataset() for t in traces]
        if "chain" in parts[0].dims:
            ds = xr.concat(parts, dim="chain")
            groups[name] = ds.assign_coords(chain=np.arange(ds.sizes["chain"]))
        else:
            groups[name] = parts[0]
    return xr.DataTree.from_dict(groups)


def split_chains(s: dict, n_parts: int) -> list[dict]:
    """Sampler settings for ``n_parts`` runs sharing the chains (the first get one more) and the
    cores (at least one each)."""
    chains, cores = int(s["chains"]), int(s["cores"])
    return [
        {**s, "chains": chains // n_parts + (k < chains % n_parts), "cores": max(1, cores // n_parts)}
        for k in range(n_parts)
    ]


def _passing(trace: xr.DataTree, done: int, marks: list[int], th: dict, resolve, most: int):
    """The first ``d`` draws at the first checkpoint d <= ``done`` that meets ``th`` (or reaches
    ``most`` draws), resolved; None while none is decided. ``marks`` holds the next checkpoint;
    each one that falls short is replaced by :func:`next_checkpoint`."""
    while done >= marks[0]:
        d = marks.pop(0)
        head = resolve(first_draws(trace, d))
        if d >= most:
            return head
        ok, details = _meets(head, th)
        if ok:
            return head
        marks.append(next_checkpoint(d, details, th, most))
    return None


def _progress_watch(n_runs: int):
    """(per-run finished draws of each chain, including tuning; a callback maker for nutpie's
    ``progress_callback``, which reports them from a background thread without copying draws)."""
    progress: list[list[int]] = [[] for _ in range(n_runs)]

    def watcher(k: int):
        def callback(chains) -> None:
            progress[k] = [int(c.finished_draws) for c in chains]

        return callback

    return progress, watcher


def _reached(progress: list[list[int]], final: dict, tune: int) -> int:
    """Post-tuning draws every chain of the unfinished runs has made (as the callbacks report)."""
    running = [min(p) - tune if p else 0 for k, p in enumerate(progress) if k not in final]
    return min(running, default=10**9)


def _background(parts: list, s: dict, th: dict, seed: int, marks: list[int], resolve) -> xr.DataTree:
    """The chains (``cores`` at a time) looked at while they run, cancelled once a checkpoint
    passes. Rerunning to each checkpoint instead would repeat the tuning every time. With fewer
    cores than parts the parts run one after another to the most draws: the same draws result.

    The draws are copied out of the running sampler (``inspect``, about a second for a few
    thousand cells' deterministics) only when the progress callbacks say every chain has passed the
    next checkpoint: copying at every poll took a core from the chains."""
    import nutpie

    settings = [
        _settings(sk, seed + 7919 * k, int(s["draws"])) for k, sk in enumerate(split_chains(s, len(parts)))
    ]
    if int(s["cores"]) < len(parts):
        trace = concat_chains([nutpie.sample(c, **sk) for c, sk in zip(parts, settings, strict=True)])
        return _passing(trace, int(s["draws"]), marks, th, resolve, int(s["draws"]))
    progress, watcher = _progress_watch(len(parts))
    runs = [
        nutpie.sample(c, **sk, blocking=False, progress_callback=watcher(k), progress_rate=PROGRESS_MS)
        for k, (c, sk) in enumerate(zip(parts, settings, strict=True))
    ]
    final: dict[int, xr.DataTree] = {}  # a finished run's trace (nutpie hands it over once)
    while True:
        for k, run in enumerate(runs):
            if k not in final and _finished(run):
                final[k] = run.wait()
        if len(final) < len(runs) and _reached(progress, final, int(s["tune"])) < marks[0]:
            time.sleep(POLL_S)
            continue
        trace = concat_chains([final[k] if k in final else r.inspect() for k, r in enumerate(runs)])
        done = int(s["draws"]) if len(final) == len(runs) else _completed(trace)
        head = _passing(trace, done, marks, th, resolve, int(s["draws"]))
        if head is not None:
            for k, run in enumerate(runs):
                if k not in final:
                    run.cancel()
            return head
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


def sample_to_ess(compiled, s: dict, th: dict, seed: int, resolve=None) -> xr.DataTree:
    """nutpie with sampler settings ``s`` (``draws`` the most per chain, ``draws_min`` the first
    checkpoint), stopped at the first checkpoint whose draws meet the thresholds ``th``.

    ``compiled`` is one compiled model, or a list of the same model with different starts: the
    chains are split among them (``split_chains``), part k seeded ``seed + 7919 k``, and pooled in
    that order. ``resolve(draws) -> draws`` is applied to the pooled draws at every checkpoint and to
    the result (the joint model drops chains in a minor mode of gamma there)."""
    marks = [first_checkpoint(s["draws_min"], s["draws"])]
    parts = compiled if isinstance(compiled, list) else [compiled]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _background(parts, s, th, seed, marks, resolve or (lambda idata: idata))
