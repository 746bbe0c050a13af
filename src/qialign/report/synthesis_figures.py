"""The synthesis page's figures: a forest plot by trial and ward, and the wards' effects against
alignment across every trial (the report's style, :mod:`qialign.report.figures`)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from qialign.report.figures import ACCENT, INK, INTERVENTION, _fig, styled, to_data_uri

#: one colour per trial (cycled)
TRIAL_COLOURS = ("#17817b", "#c4572a", "#3d5a98", "#8a5a9e", "#b8860b", "#5b6b7a")
Z95 = 1.959963984540054


@styled
def trial_forest(wards: pd.DataFrame, pooled: tuple[float, float, float], xlabel: str, better: str) -> str:
    """One row per ward (its trial's posterior mean +- 1.96 SD), grouped by trial, and the pooled
    effect at mean alignment as a diamond."""
    trials = list(dict.fromkeys(wards["trial"]))
    fig, ax = _fig(6.8, 1.0 + 0.24 * (len(wards) + 2 * len(trials)))
    y, ticks, names = 0.0, [], []
    for i, trial in enumerate(trials):
        part = wards[wards["trial"] == trial]
        colour = TRIAL_COLOURS[i % len(TRIAL_COLOURS)]
        for row in part.itertuples():
            lo, hi = row.effect - Z95 * row.effect_sd, row.effect + Z95 * row.effect_sd
            ax.hlines(-y, lo, hi, color=colour, lw=1.8)
            ax.plot(row.effect, -y, "o", color=colour, ms=4)
            ticks.append(-y)
            names.append(f"{trial} · {row.cluster}")
            y += 1
        y += 0.8
    e, lo, hi = pooled
    ax.fill([lo, e, hi, e], [-y, -y + 0.3, -y, -y - 0.3], color=INK)
    ticks.append(-y)
    names.append("pooled (mean alignment)")
    ax.axvline(0, color=ACCENT, lw=1, ls="--")
    ax.set_yticks(ticks, names, fontsize=7)
    ax.set_xlabel(xlabel)
    ax.grid(axis="y", visible=False)
    arrow = "← favours intervention" if better == "lower" else "favours intervention →"
    ax.text(0.0 if better == "lower" else 1.0, 1.01, arrow, transform=ax.transAxes, fontsize=7.5,
            ha="left" if better == "lower" else "right", color="#5b6b7a")  # fmt: skip
    return to_data_uri(fig)


@styled
def effect_vs_alignment(
    wards: pd.DataFrame, lines: dict[str, tuple[float, float]], xlabel: str, ylabel: str
) -> str:
    """Every ward's effect (+- 1.96 SD) against its standardised measured alignment (+- 1.96 SE,
    column ``alignment_se_z``), coloured by trial, with each method's line intercept + slope z
    (``lines``: label -> (a, b))."""
    fig, ax = _fig(6.6, 3.9)
    for i, trial in enumerate(dict.fromkeys(wards["trial"])):
        part = wards[wards["trial"] == trial]
        colour = TRIAL_COLOURS[i % len(TRIAL_COLOURS)]
        ax.errorbar(part["alignment_z"], part["effect"], xerr=Z95 * part["alignment_se_z"],
                    yerr=Z95 * part["effect_sd"], fmt="o", ms=4, color=colour, elinewidth=0.8, alpha=0.85,
                    label=trial)  # fmt: skip
    grid = np.linspace(wards["alignment_z"].min() - 0.2, wards["alignment_z"].max() + 0.2, 50)
    for (label, (a, b)), style in zip(lines.items(), ("-", "--"), strict=False):
        ax.plot(grid, a + b * grid, style, color=INTERVENTION if style == "-" else INK, lw=2, label=label)
    ax.axhline(0, color=ACCENT, lw=1, ls=":")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=7.5, loc="best")
    return to_data_uri(fig)
