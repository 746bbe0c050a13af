"""Matplotlib figures for the report, returned as ``data:image/png;base64,...`` URIs.

Each function takes plain tables/arrays (no file access) and returns one PNG data URI, so the
page needs nothing from the network. The Agg backend is used; figures are closed after encoding.
"""

from __future__ import annotations

import base64
import functools
import io

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.colors import ListedColormap  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from qialign.report.tables import count  # noqa: E402

CONTROL = "#8c9bab"
INTERVENTION = "#17817b"
ACCENT = "#c4572a"
INK = "#22303c"
GRID = "#e3e8ee"
NO_DATA = "#ffffff"

STYLE = {
    "font.family": "DejaVu Sans",
    "font.size": 9,
    "axes.edgecolor": "#9aa7b4",
    "axes.labelcolor": INK,
    "axes.titlesize": 10,
    "axes.titleweight": "bold",
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.color": GRID,
    "grid.linewidth": 0.8,
    "xtick.color": INK,
    "ytick.color": INK,
    "legend.frameon": False,
    "figure.dpi": 100,
}


def to_data_uri(fig, dpi: int = 130) -> str:
    """Encode a figure as a PNG data URI and close it."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight", facecolor="white")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _fig(w: float, h: float, **kw):
    return plt.subplots(figsize=(w, h), **kw)


def styled(fn):
    """Run a figure function entirely under the report's matplotlib style."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with plt.rc_context(STYLE):
            return fn(*args, **kwargs)

    return wrapper


RATIO_TICKS = (0.1, 0.2, 0.25, 0.33, 0.5, 0.67, 0.8, 1, 1.25, 1.5, 2, 3, 4, 5, 10)


def _ratio_ticks(ax, lo: float, hi: float) -> None:
    """Readable ticks for a log-scaled ratio axis (log locators give none on narrow ranges)."""
    ticks = [t for t in RATIO_TICKS if lo <= t <= hi]
    if len(ticks) < 3:
        ticks = sorted(set(ticks) | {float(f"{v:.2g}") for v in np.geomspace(lo, hi, 4)[1:-1]})
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())


@styled
def design_grid(
    clusters: list[tuple[str, str]],
    periods: list[int],
    treated: np.ndarray,
    n: np.ndarray,
    below: int = 5,
) -> str:
    """Clusters (rows, grouped by site) x periods; colour = arm; text = patients in the cell.

    ``treated`` holds 1 / 0 / NaN (no data) per cluster x period, ``n`` the cell sizes (NaN none).
    """
    rows, cols = len(clusters), len(periods)
    with plt.rc_context({"axes.grid": False}):
        fig, ax = plt.subplots(figsize=(min(1.2 + 0.52 * cols, 11), 0.9 + 0.36 * rows))
        code = np.where(np.isnan(treated), 0, np.where(treated > 0, 2, 1))
        cmap = ListedColormap([NO_DATA, "#dfe5eb", "#bfe0dc"])
        ax.imshow(code, cmap=cmap, vmin=0, vmax=2, aspect="auto")
        for i in range(rows):
            for j in range(cols):
                if not np.isnan(n[i, j]):
                    ax.text(j, i, count(n[i, j], below), ha="center", va="center", fontsize=7, color=INK)
        ax.set_xticks(range(cols), [str(p) for p in periods])
        ax.set_yticks(range(rows), [f"{c}  ({s})" if s else c for c, s in clusters])
        ax.set_xticks(np.arange(-0.5, cols, 1), minor=True)
        ax.set_yticks(np.arange(-0.5, rows, 1), minor=True)
        ax.grid(which="minor", color="white", linewidth=1.5)
        ax.tick_params(which="both", length=0)
        for side in ax.spines.values():
            side.set_visible(False)
        for i in range(1, rows):  # separate sites
            if clusters[i][1] != clusters[i - 1][1]:
                ax.axhline(i - 0.5, color=INK, linewidth=1.2)
        ax.set_xlabel("Period")
        handles = [
            Patch(facecolor="#dfe5eb", label="control"),
            Patch(facecolor="#bfe0dc", label="intervention"),
            Patch(facecolor=NO_DATA, edgecolor="#c9d1d9", label="no data"),
        ]
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
    return to_data_uri(fig)


#: the model's lines on the time-series plot: a counterfactual_by_period.csv series (its
#: ``_mean``; its band from ``_lower`` / ``_upper``: "fill", "edges" (thin lines, to tell it from
#: a fill beneath) or None), the line's style and legend
TIME_SERIES_LINES = (
    (
        "without",
        "fill",
        {"color": CONTROL, "lw": 1.8, "ls": "--", "label": "expected without intervention (all clusters)"},
    ),
    (
        "trend",
        "edges",
        {"color": "0.35", "lw": 1.2, "label": "secular trend f(t) at baseline"},
    ),
    (
        "without_treated",
        None,
        {"color": ACCENT, "lw": 1.6, "ls": ":", "label": "counterfactual: intervention cells without it"},
    ),
    (
        "actual_treated",
        None,
        {"color": INTERVENTION, "lw": 1.4, "alpha": 0.8, "label": "model fit, intervention cells"},
    ),
)


@styled
def time_series(by_period: pd.DataFrame, ylabel: str, title: str = "", band_note: str = "") -> str:
    """Observed outcome per period by arm, the expected course without the intervention, the fit.

    ``by_period`` columns: period, observed_control, observed_intervention, n_control,
    n_intervention and optionally the TIME_SERIES_LINES series of counterfactual_by_period.csv
    (``<series>_mean``, ``_lower``, ``_upper``). Dot area is proportional to the patients behind the point.
    """
    fig, ax = _fig(7.6, 3.6)
    d = by_period.sort_values("period")
    t = d["period"].to_numpy()
    for series, band, style in TIME_SERIES_LINES:
        if f"{series}_mean" in d and d[f"{series}_mean"].notna().any():
            if band == "fill":
                ax.fill_between(
                    t, d[f"{series}_lower"], d[f"{series}_upper"], color=style["color"], alpha=0.18, lw=0
                )
            elif band == "edges":
                for end in ("_lower", "_upper"):
                    ax.plot(t, d[series + end], color=style["color"], lw=0.7, ls=(0, (2, 2)))
            ax.plot(t, d[f"{series}_mean"], **style)
    top = np.nanmax(
        [d.get("n_control", pd.Series([1])).max(), d.get("n_intervention", pd.Series([1])).max(), 1]
    )
    for arm, colour in (("control", CONTROL), ("intervention", INTERVENTION)):
        size = 12 + 90 * np.nan_to_num(np.asarray(d[f"n_{arm}"], float)) / top
        ax.scatter(
            t,
            d[f"observed_{arm}"],
            s=size,
            color=colour,
            edgecolor="white",
            zorder=3,
            label=f"observed, {arm}",
        )
    ax.set_xlabel("Period (calendar time)")
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, loc="left")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
    if band_note:
        ax.text(
            1.02, 0.02, band_note, transform=ax.transAxes, fontsize=7, color="#5b6b7a", va="bottom", wrap=True
        )
    return to_data_uri(fig)


@styled
def forest(
    labels: list[str],
    est: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    xlabel: str,
    *,
    overall: tuple[float, float, float] | None = None,
    overall_label: str = "overall (mean alignment)",
    null: float = 1.0,
    log: bool = True,
    better: str = "lower",
    truth: float | None = None,
) -> str:
    """A forest plot: one row per label, point and interval; the overall estimate as a diamond;
    ``truth`` (a simulated trial's true value) as a dotted line."""
    k = len(labels) + (1 if overall else 0)
    fig, ax = _fig(6.8, 0.8 + 0.32 * k)
    y = np.arange(len(labels))[::-1] + (1 if overall else 0)
    ax.hlines(y, lower, upper, color=INTERVENTION, lw=2)
    ax.plot(est, y, "o", color=INTERVENTION, ms=5)
    ticks, names = list(y), list(labels)
    if overall:
        e, lo, hi = overall
        ax.fill([lo, e, hi, e], [0, 0.25, 0, -0.25], color=INK)
        ticks.append(0)
        names.append(overall_label)
    ax.axvline(null, color=ACCENT, lw=1, ls="--")
    if truth is not None:
        ax.axvline(truth, color=INK, lw=1.2, ls=":", label="true value (synthetic)")
        ax.legend(loc="lower right", fontsize=7.5, frameon=False)
    if log:
        ax.set_xscale("log")
        vals = np.concatenate(
            [np.asarray(lower, float), np.asarray(upper, float), [null], list(overall or []), [truth or null]]
        )
        vals = vals[np.isfinite(vals) & (vals > 0)]
        _ratio_ticks(ax, vals.min(), vals.max())
    ax.set_yticks(ticks, names)
    ax.set_ylim(-0.7, k - 0.3)
    ax.set_xlabel(xlabel)
    ax.grid(axis="y", visible=False)
    arrow = "← favours intervention" if better == "lower" else "favours intervention →"
    ax.text(
        0.0 if better == "lower" else 1.0,
        1.02,
        arrow,
        transform=ax.transAxes,
        fontsize=7.5,
        ha="left" if better == "lower" else "right",
        color="#5b6b7a",
    )
    return to_data_uri(fig)


@styled
def exposure_curve(e: np.ndarray, est: np.ndarray, lower: np.ndarray, upper: np.ndarray, ylabel: str) -> str:
    """Effect by exposure time (periods since the cluster started) with intervals."""
    fig, ax = _fig(6.0, 3.0)
    ax.fill_between(e, lower, upper, color=INTERVENTION, alpha=0.18, lw=0)
    ax.plot(e, est, "o-", color=INTERVENTION, ms=4)
    ax.axhline(0, color=ACCENT, lw=1, ls="--")
    ax.set_xlabel("Exposure time (periods since the cluster started)")
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_ylabel(ylabel)
    return to_data_uri(fig)


@styled
def alignment_profiles(profiles: pd.DataFrame, domains: list[str], scale: str = "domain mean") -> str:
    """Small multiples, one per cluster: domain means of clinical vs managerial staff (dumbbells)."""
    clusters = list(profiles["cluster"])
    ncol = min(4, len(clusters))
    nrow = int(np.ceil(len(clusters) / ncol))
    fig, axes = plt.subplots(
        nrow,
        ncol,
        figsize=(2.3 * ncol + 0.6, 0.35 * len(domains) * nrow + 0.9 * nrow),
        sharex=True,
        sharey=True,
        squeeze=False,
    )
    y = np.arange(len(domains))[::-1]
    for ax, (_, row) in zip(axes.flat, profiles.iterrows(), strict=False):
        c = np.array([row.get(f"clinical_{d}", np.nan) for d in domains], float)
        m = np.array([row.get(f"managerial_{d}", np.nan) for d in domains], float)
        ax.hlines(y, np.fmin(c, m), np.fmax(c, m), color="#c9d1d9", lw=3)
        ax.plot(c, y, "o", color=INTERVENTION, ms=5)
        ax.plot(m, y, "s", color=ACCENT, ms=5)
        ax.set_title(str(row["cluster"]), loc="left", fontsize=9)
        ax.set_yticks(y, [d.replace("_", " ") for d in domains], fontsize=7.5)
        ax.grid(axis="y", visible=False)
    for ax in list(axes.flat)[len(clusters) :]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel(scale, fontsize=8)
    fig.legend(
        handles=[
            Line2D([], [], marker="o", ls="", color=INTERVENTION, label="clinical staff"),
            Line2D([], [], marker="s", ls="", color=ACCENT, label="managerial staff"),
        ],
        loc="upper center",
        ncol=2,
        bbox_to_anchor=(0.5, 1.02),
        fontsize=8,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    return to_data_uri(fig)


@styled
def ranked_intervals(labels: list[str], est, lower, upper, xlabel: str) -> str:
    """Point and interval per label, sorted from highest to lowest."""
    order = np.argsort(np.asarray(est, float))
    fig, ax = _fig(6.0, 0.7 + 0.3 * len(labels))
    y = np.arange(len(labels))
    e, lo, hi = (np.asarray(v, float)[order] for v in (est, lower, upper))
    ok = ~(np.isnan(lo) | np.isnan(hi))
    ax.hlines(y[ok], lo[ok], hi[ok], color=INTERVENTION, lw=2)
    ax.plot(e, y, "o", color=INTERVENTION, ms=5)
    ax.set_yticks(y, [labels[i] for i in order])
    ax.grid(axis="y", visible=False)
    ax.set_xlabel(xlabel)
    return to_data_uri(fig)


@styled
def moderation(
    z: np.ndarray,
    est: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    labels: list[str],
    line: pd.DataFrame | None,
    ylabel: str,
) -> str:
    """Cluster-specific effects against standardised alignment, with the fitted theta + gamma z.

    ``line`` columns: z, estimate, lower, upper (the band is drawn through these points).
    """
    fig, ax = _fig(6.4, 3.6)
    if line is not None and len(line):
        ax.fill_between(line["z"], line["lower"], line["upper"], color=INTERVENTION, alpha=0.15, lw=0)
        ax.plot(line["z"], line["estimate"], color=INTERVENTION, lw=2, label="fitted: θ + γ·z")
    ax.vlines(z, lower, upper, color=CONTROL, lw=1.5)
    ax.plot(z, est, "o", color=INK, ms=5, label="cluster-specific effect")
    for zi, ei, lab in zip(z, est, labels, strict=True):
        ax.annotate(lab, (zi, ei), xytext=(4, 3), textcoords="offset points", fontsize=7, color="#5b6b7a")
    ax.axhline(0, color=ACCENT, lw=1, ls="--")
    ax.set_xlabel("Alignment (standardised over clusters, z)")
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8, loc="best")
    return to_data_uri(fig)


@styled
def ppc(table: pd.DataFrame, xlabel: str, with_intervals: bool) -> str:
    """Observed vs posterior-predicted means (one point per cluster-period) with the identity line."""
    fig, ax = _fig(4.8, 4.2)
    obs, pred = table["observed"].to_numpy(float), table["predicted"].to_numpy(float)
    tr = table["treated"].to_numpy(bool)
    if with_intervals and {"lower", "upper"} <= set(table):
        ax.vlines(obs, table["lower"], table["upper"], color="#c9d1d9", lw=1.2)
    ax.plot(obs[~tr], pred[~tr], "o", color=CONTROL, ms=4, label="control")
    ax.plot(obs[tr], pred[tr], "o", color=INTERVENTION, ms=4, label="intervention")
    both = np.concatenate([obs, pred])
    lo, hi = np.nanmin(both), np.nanmax(both)
    pad = 0.05 * (hi - lo or 1)
    ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], color=ACCENT, lw=1, ls="--")
    ax.set_xlabel(f"observed {xlabel}")
    ax.set_ylabel(f"predicted {xlabel}")
    ax.legend(fontsize=8)
    return to_data_uri(fig)


@styled
def power_curves(curves: pd.DataFrame, xlabel: str) -> str:
    """Power against effect size: one panel per design (columns design, icc, cac, effect, power);
    colour by ICC, solid for CAC 1 and dashed below."""
    designs = list(dict.fromkeys(curves["design"]))
    fig, axes = _fig(3.4 * len(designs) + 0.6, 3.2, ncols=len(designs), sharey=True, squeeze=False)
    iccs = sorted(curves["icc"].unique())
    colours = dict(zip(iccs, [INTERVENTION, ACCENT, "#5b6bb3", "#9a6fb0", "#b08a2e"] * 3, strict=False))
    for ax, design in zip(axes[0], designs, strict=True):
        for (icc, cac), g in curves[curves["design"] == design].groupby(["icc", "cac"], sort=True):
            ax.plot(
                g["effect"],
                g["power"],
                color=colours[icc],
                lw=1.8,
                ls="-" if cac >= 1 else "--",
                label=f"ICC {icc:g}, CAC {cac:g}",
            )
        ax.axhline(0.8, color="grey", lw=0.8, ls=":")
        ax.set_ylim(0, 1.01)
        ax.set_title(str(design), loc="left", fontsize=9)
        ax.set_xlabel(xlabel)
    axes[0][0].set_ylabel("power")
    axes[0][-1].legend(fontsize=7, frameon=False, loc="lower right")
    return to_data_uri(fig)
