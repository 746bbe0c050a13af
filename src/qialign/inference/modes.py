"""Whether the chains of a fit agree on one mode of γ (``alignment_interaction``).

The joint model (``propagation: joint``) can have a second, reflected mode: γ of the other sign with
the survey's alignment pattern reversed and compressed, separated by a low-density ridge at γ = 0.
Its chains start dispersed (both signs of γ), so a chain that settles in the other mode shows up
here instead of being hidden by a common start. With per-chain means m_c and SDs s_c of γ,

    separation = (max_c m_c - min_c m_c) / sqrt(mean_c s_c²),

and the posterior is reported as multimodal when separation > ``SEPARATION`` (within one mode the
chain means differ by Monte Carlo error, a small fraction of the SD).
"""

from __future__ import annotations

import numpy as np

#: chain means of γ further apart than this many within-chain SDs: more than one mode
SEPARATION = 3.0
GAMMA = "alignment_interaction"


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


def multimodal_problem(modes: dict) -> str:
    """The fit problem naming a multimodal γ (for ``fit.json`` and the report's attention box)."""
    means = ", ".join(f"{m:+.3g}" for m in modes["chain_means"])
    return (
        f"the posterior of gamma (alignment_interaction) is multimodal: chain means {means} are "
        f"{modes['separation']:.1f} within-chain SDs apart (> {SEPARATION:g}); the chains found different "
        "modes (e.g. gamma of the other sign with the alignment pattern reversed), so the pooled "
        "estimate mixes them and is not one answer"
    )
