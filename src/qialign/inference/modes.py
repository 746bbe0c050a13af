"""Whether the chains of a fit agree on one mode of γ (``alignment_interaction``), and which mode
holds the posterior mass when they do not.

The joint model (``propagation: joint``) can have a second, reflected mode: γ of the other sign with
the survey's alignment pattern reversed and compressed, separated by a low-density ridge at γ = 0.
Its chains start on both sides (half at γ = +prior SD, half at -prior SD, ``sign_starts``), so a
chain that settles in the other mode shows up here instead of being hidden by a common start. With
per-chain means m_c and SDs s_c of γ,

    separation = (max_c m_c - min_c m_c) / sqrt(mean_c s_c²),

and the posterior is reported as multimodal when separation > ``SEPARATION`` (within one mode the
chain means differ by Monte Carlo error, a small fraction of the SD).

Chains of one mode (means within ``SEPARATION`` SDs of their neighbour) form a group. NUTS does not
move between the modes, so the share of chains in a mode says nothing about its mass; the log
density does. For two modes of the same spread (entropy), log mass = E[log p] + entropy, so

    log(mass_a / mass_b) ≈ mean log p over a's draws - mean log p over b's draws  (``logp_gap``).

When the best group's mean log density exceeds every other group's by more than ``LOGP_GAP`` (the
other modes then hold under e^-4 ≈ 2% of the mass each), the posterior is the best group's chains:
the others are dropped, and the fit record and report say so. Closer modes are a real ambiguity:
all chains are kept and the fit is unreliable, with a problem naming the modes.
"""

from __future__ import annotations

import numpy as np

#: chain means of γ further apart than this many within-chain SDs: more than one mode
SEPARATION = 3.0
#: a mode whose mean log density is this much below the best mode's is a minor mode (mass < e^-4)
LOGP_GAP = 4.0
GAMMA = "alignment_interaction"
#: the per-draw log density in the sampler's statistics: nutpie's name, then PyMC's
LOGP_STATS = ("logp", "lp")


def sign_starts(start: dict, scale: float) -> list[dict]:
    """Two starts for the joint model's chains, gamma at +``scale`` and at -``scale`` (the rest as
    ``start``, jittered): which mode a chain settles in is mostly set by the sign gamma starts
    with, so chains started on both sides find both modes for ``resolve_modes`` to weigh, however
    few chains there are (with a jittered gamma both chains sat in the wrong mode in 5 of 20 simulated
    trials)."""
    return [{**start, GAMMA: float(scale)}, {**start, GAMMA: -float(scale)}]


def chain_modes(idata, var: str = GAMMA) -> dict | None:
    """Per-chain means, within-chain SD and separation of ``var``; None without it or with one chain."""
    post = idata["posterior"]
    if var not in post.data_vars or post.sizes.get("chain", 1) < 2:
        return None
    x = np.asarray(post[var], dtype=float).reshape(post.sizes["chain"], -1)
    means, within = x.mean(axis=1), float(np.sqrt(np.mean(x.var(axis=1, ddof=1))))
    separation = float((means.max() - means.min()) / within) if within > 0 else 0.0
    return {
        "chain_means": [float(m) for m in means],
        "within_sd": within,
        "separation": separation,
        "multimodal": separation > SEPARATION,
    }


def mode_groups(chain_means: list[float], within_sd: float) -> list[list[int]]:
    """Chains grouped by mode: sorted by mean, a chain joins its neighbour's group when their means
    are within ``SEPARATION`` within-chain SDs."""
    order = np.argsort(chain_means, kind="stable")
    groups = [[int(order[0])]]
    for prev, c in zip(order[:-1], order[1:], strict=True):
        if chain_means[c] - chain_means[prev] > SEPARATION * within_sd:
            groups.append([])
        groups[-1].append(int(c))
    return groups


def chain_logp(idata) -> np.ndarray | None:
    """Mean log density per chain (the sampler's own statistic), or None if it did not record one."""
    stats = idata["sample_stats"] if "sample_stats" in idata.children else None
    name = next((n for n in LOGP_STATS if stats is not None and n in stats.data_vars), None)
    if name is None:
        return None
    lp = np.asarray(stats[name], dtype=float)
    return lp.reshape(lp.shape[0], -1).mean(axis=1)


def resolve_modes(idata, var: str = GAMMA) -> tuple:
    """(idata, modes): ``idata`` with only the dominant mode's chains when the others are minor
    (module docstring), else unchanged; ``modes`` is :func:`chain_modes` plus, when multimodal,
    ``groups`` (chains, mean of ``var``, mean log density), ``logp_gap``, ``dropped_chains`` and,
    when chains were dropped, their ``note``."""
    modes = chain_modes(idata, var)
    lp = chain_logp(idata)
    if modes is None or not modes["multimodal"] or lp is None:
        return idata, modes
    groups = mode_groups(modes["chain_means"], modes["within_sd"])
    mean_lp = [float(lp[g].mean()) for g in groups]
    best = int(np.argmax(mean_lp))
    modes["groups"] = [
        {"chains": g, "mean": float(np.mean([modes["chain_means"][c] for c in g])), "mean_logp": m}
        for g, m in zip(groups, mean_lp, strict=True)
    ]
    others = [m for k, m in enumerate(mean_lp) if k != best]
    # one group: the chain means spread without a gap between neighbours, nothing to set aside
    modes["logp_gap"] = mean_lp[best] - max(others) if others else None
    modes["dropped_chains"] = []
    if others and modes["logp_gap"] > LOGP_GAP:
        keep = groups[best]
        modes["dropped_chains"] = sorted(c for g in groups for c in g if c not in keep)
        modes["multimodal"] = False  # one mode holds the mass; the record keeps the others
        idata = idata.isel(chain=keep, missing_dims="ignore")
        modes["note"] = minor_mode_note(modes)  # the sentence fit.json and the report carry
    return idata, modes


def _groups_text(modes: dict) -> str:
    return "; ".join(
        f"chains {', '.join(map(str, g['chains']))} at gamma {g['mean']:+.3g} "
        f"(mean log density {g['mean_logp']:.1f})"
        for g in modes["groups"]
    )


def multimodal_problem(modes: dict) -> str:
    """The fit problem naming a multimodal γ (for ``fit.json`` and the report's attention box)."""
    means = ", ".join(f"{m:+.3g}" for m in modes["chain_means"])
    text = (
        f"the posterior of gamma (alignment_interaction) is multimodal: chain means {means} are "
        f"{modes['separation']:.1f} within-chain SDs apart (> {SEPARATION:g}); the chains found different "
        "modes (e.g. gamma of the other sign with the alignment pattern reversed), so the pooled "
        "estimate mixes them and is not one answer"
    )
    if modes.get("logp_gap") is not None:
        text += (
            f". Their log densities are within {LOGP_GAP:g} of each other ({_groups_text(modes)}), "
            "so neither mode can be set aside"
        )
    return text


def minor_mode_note(modes: dict) -> str | None:
    """What the fit record and report say when minor-mode chains were dropped; None if none were."""
    if not modes or not modes.get("dropped_chains"):
        return None
    n = len(modes["chain_means"])
    return (
        f"{len(modes['dropped_chains'])} of {n} chains settled in a minor mode of gamma and were "
        f"dropped: {_groups_text(modes)}. The best mode's mean log density is {modes['logp_gap']:.1f} "
        f"higher (> {LOGP_GAP:g}), i.e. the other mode holds about e^-{modes['logp_gap']:.0f} of the "
        "mass if the modes have the same spread; the estimates use the remaining chains"
    )
