"""The counterfactual SPC chart of one cluster: its series, Shewhart limits from the baseline, the
model's band without the intervention and the limits around it, the start of the intervention."""

from __future__ import annotations

import matplotlib
import matplotlib.pyplot as plt
import numpy as np

from qialign.report.figures import ACCENT, CONTROL, INK, INTERVENTION, styled, to_data_uri

SIGNAL = "#b42318"


@styled
def spc_chart(w, title: str, ylabel: str) -> str:
    """``w``: a :class:`qialign.report.spc_section.ClusterSPC`; returns a PNG data URI."""
    fig, ax = plt.subplots(figsize=(7.2, 2.5))
    t = w.periods
    if w.limits is not None:
        ax.axhline(w.limits.centre, color=INK, lw=1, label="centre (baseline)")
        ax.step(t, w.limits.upper, where="mid", color=INK, lw=0.8, ls=(0, (4, 2)), label="control limits")
        ax.step(t, w.limits.lower, where="mid", color=INK, lw=0.8, ls=(0, (4, 2)))
    else:
        ax.axhline(w.median, color=INK, lw=1, label="median (baseline)")
    on = w.treated.astype(bool)
    if on.any():
        ax.fill_between(
            t,
            w.without_lower,
            w.without_upper,
            where=on,
            color=ACCENT,
            alpha=0.25,
            lw=0,
            step=None,
            label="expected without the intervention",
        )
        ax.plot(t[on], w.cf_lower[on], color=ACCENT, lw=0.8, ls=":", label="limits around it")
        ax.plot(t[on], w.cf_upper[on], color=ACCENT, lw=0.8, ls=":")
        ax.axvline(t[on][0] - 0.5, color=INTERVENTION, lw=1.2, label="intervention starts")
    ax.plot(t, w.values, color=CONTROL, lw=1, zorder=2)
    ax.scatter(t, w.values, s=16, zorder=3, color=np.where(on, INTERVENTION, CONTROL))
    if w.outside.any():
        ax.scatter(
            t[w.outside],
            w.values[w.outside],
            s=40,
            facecolor="none",
            edgecolor=SIGNAL,
            lw=1.4,
            zorder=4,
            label="beyond the limits",
        )
    ax.set_title(title, loc="left")
    ax.set_ylabel(ylabel)
    ax.set_xlabel("Period")
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=7)
    return to_data_uri(fig, dpi=110)
