"""The SBC page (``results/sbc/report.html``): every model of a study, with a table of
uniformity p-values and interval coverage (and its binomial range under calibration) and, per
model and parameter, rank histograms, ECDF-difference plots and recovery scatter. Self-contained
like the trial report: inline styles, figures as PNG data URIs (``qialign.report.figures`` style
and encoder)."""

from __future__ import annotations

import datetime as _dt
from pathlib import Path

import jinja2
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from scipy import stats  # noqa: E402

from qialign import __version__  # noqa: E402
from qialign.families import FAMILIES  # noqa: E402
from qialign.report.figures import ACCENT, CONTROL, INK, INTERVENTION, styled, to_data_uri  # noqa: E402
from qialign.studies.ranks import bin_counts, bin_probabilities, ecdf_uniformity  # noqa: E402

LABELS = {
    "treatment_effect": "treatment effect θ",
    "alignment_interaction": "alignment interaction γ",
    "sd_cluster": "cluster SD",
    "sd_cluster_period": "cluster-period SD",
    "mu": "intercept μ",
    "phi": "NB dispersion φ (shape per patient)",
    "sigma": "residual SD σ (standardised y)",
    "sigma_respondent": "survey respondent SD",
    "threshold_scale": "survey threshold scale",
    "mu_log_discrimination": "survey mean log discrimination",
}


@styled
def rank_histogram(ranks, L: int, bins: int, title: str = "", band: float = 0.99) -> str:
    """Counts of ranks in ``bins`` bins, the expected count and its pointwise ``band`` interval."""
    ranks = np.asarray(ranks, int)
    N = len(ranks)
    counts = bin_counts(ranks, L, bins)
    p = bin_probabilities(L, bins)
    lo = stats.binom.ppf((1 - band) / 2, N, p)
    hi = stats.binom.ppf(1 - (1 - band) / 2, N, p)
    fig, ax = plt.subplots(figsize=(4.6, 2.9))
    x = np.arange(bins)
    ax.bar(x, hi - lo, bottom=lo, width=1.0, color=CONTROL, alpha=0.25, lw=0, label=f"{band:.0%} band")
    ax.step(np.r_[x - 0.5, bins - 0.5], np.r_[N * p, N * p[-1]], where="post", color=INK, lw=1, ls="--")
    ax.bar(x, counts, width=0.8, color=INTERVENTION, alpha=0.85, label="replicates")
    ax.set_xticks(x, [f"{int(np.ceil(b * (L + 1) / bins))}" for b in range(bins)], fontsize=7)
    ax.set_xlabel(f"rank of the true value among L = {L} draws (bin start)")
    ax.set_ylabel("replicates")
    ax.set_xlim(-0.6, bins - 0.4)
    ax.grid(axis="x", visible=False)
    if title:
        ax.set_title(title, loc="left")
    ax.legend(loc="upper right", fontsize=7)
    return to_data_uri(fig)


@styled
def ecdf_difference(test, N: int, title: str = "", alpha: float = 0.05) -> str:
    """ECDF of the fractional ranks minus the uniform CDF, with the simultaneous band."""
    fig, ax = plt.subplots(figsize=(4.6, 2.9))
    z = np.r_[0, test.z]
    ax.fill_between(
        z,
        np.r_[0, test.lower],
        np.r_[0, test.upper],
        step="post",
        color=CONTROL,
        alpha=0.25,
        lw=0,
        label=f"{1 - alpha:.0%} simultaneous band",
    )
    ax.step(z, np.r_[0, test.diff], where="post", color=INTERVENTION, lw=1.4, label="ECDF − uniform")
    ax.axhline(0, color=INK, lw=0.8, ls="--")
    ax.set_xlim(0, 1)
    ax.set_xlabel("fractional rank")
    ax.set_ylabel("ECDF difference")
    if title:
        ax.set_title(title, loc="left")
    ax.legend(loc="lower center", fontsize=7, ncol=2)
    ax.text(
        0.99,
        0.97,
        f"N = {N}, p = {test.p_value:.3f}",
        transform=ax.transAxes,
        ha="right",
        va="top",
        fontsize=7.5,
        color=INK,
    )
    return to_data_uri(fig)


@styled
def recovery(true, mean, lower, upper, covered, title: str = "") -> str:
    """Posterior mean and interval against the true (prior-drawn) value; misses in orange."""
    true, mean = np.asarray(true, float), np.asarray(mean, float)
    covered = np.asarray(covered, bool)
    fig, ax = plt.subplots(figsize=(4.6, 2.9))
    col = np.where(covered, INTERVENTION, ACCENT)
    ax.vlines(true, lower, upper, colors=col, lw=0.6, alpha=0.45)
    ax.scatter(true, mean, s=7, c=col, zorder=3)
    lim = [np.nanmin(np.r_[true, lower]), np.nanmax(np.r_[true, upper])]
    ax.plot(lim, lim, color=INK, lw=0.8, ls="--")
    ax.set_xlabel("true value (prior draw)")
    ax.set_ylabel("posterior mean and interval")
    marks = [
        Line2D([], [], marker="o", ls="", ms=4, color=INTERVENTION, label="interval covers"),
        Line2D([], [], marker="o", ls="", ms=4, color=ACCENT, label="misses"),
    ]
    ax.legend(handles=marks, loc="upper left", fontsize=7)
    if title:
        ax.set_title(title, loc="left")
    return to_data_uri(fig)


PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>SBC: {{ title }}</title>
<style>
:root { --ink:#22303c; --muted:#5b6b7a; --line:#dfe5eb; --bg:#f6f8fa; --accent:#17817b;
        --bad:#b42318; --bad-soft:#fef3f2; --ok:#1a7f37; --ok-soft:#eefbf1; }
body { margin:0; color:var(--ink); background:var(--bg); line-height:1.5;
       font-family: system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif; }
header { background: linear-gradient(120deg, #123c4a, #17817b); color:#fff; padding:1.6rem 2rem 1.3rem; }
header h1 { margin:0 0 .3rem; font-size:1.5rem; font-weight:650; }
header .meta { opacity:.85; font-size:.9rem; }
main { max-width:1200px; margin:0 auto; padding:1.4rem 1.5rem 3rem; }
section { background:#fff; border:1px solid var(--line); border-radius:10px; padding:1rem 1.4rem 1.2rem;
          margin-bottom:1.3rem; }
h2 { margin:0 0 .7rem; font-size:1.2rem; border-bottom:1px solid var(--line); padding-bottom:.4rem; }
h3 { margin:1rem 0 .4rem; font-size:1rem; }
table { border-collapse:collapse; font-size:.88rem; }
th, td { border-bottom:1px solid var(--line); padding:.3rem .6rem; text-align:right; }
th:first-child, td:first-child, th:nth-child(2), td:nth-child(2) { text-align:left; }
th { color:var(--muted); font-weight:600; }
.pass { color:var(--ok); font-weight:700; } .fail { color:var(--bad); font-weight:700; }
.verdict { border:2px solid var(--ok); background:var(--ok-soft); border-radius:10px; padding:.7rem 1.2rem;
           margin-bottom:1.3rem; }
.verdict.bad { border-color:var(--bad); background:var(--bad-soft); }
.figs { display:grid; grid-template-columns:repeat(auto-fill, minmax(330px, 1fr)); gap:.8rem; }
.figs img { width:100%; height:auto; }
code { font-family: ui-monospace, Menlo, Consolas, monospace; font-size:.88em; background:var(--bg);
       padding:.05rem .3rem; border-radius:3px; }
p.note { color:var(--muted); font-size:.88rem; }
</style></head><body>
<header><h1>Simulation-based calibration: {{ title }}</h1>
<div class="meta">{{ n_models }} model(s), {{ n_reps }} replicates · generated {{ generated }} by qialign
{{ version }}</div></header>
<main>
<div class="verdict{{ '' if all_pass else ' bad' }}"><strong>{{ verdict }}</strong></div>
<section><h2>Summary</h2>
<table><thead><tr><th>model</th><th>parameter</th><th>replicates</th><th>χ² p ({{ bins }} bins)</th>
<th>ECDF p</th><th>{{ interval_pct }} coverage (95% CI)</th><th>expected range (95%)</th>
<th>{{ success_label }} (95% CI)</th><th>divergent replicates</th><th>criteria</th></tr>
</thead><tbody>
{% for r in rows %}<tr><td>{{ r.model }}</td><td>{{ r.label }}</td><td>{{ r.replicates }}</td>
<td>{{ r.chi2_p }}</td><td>{{ r.ecdf_p }}</td><td>{{ r.coverage }}</td><td>{{ r.expected }}</td>
<td>{{ r.success }}</td><td>{{ r.divergent }}</td><td class="{{ r.cls }}">{{ r.verdict }}</td></tr>
{% endfor %}</tbody></table>
<p class="note">Criteria (checked parameters only): both uniformity p-values &gt; {{ p_min }} and
coverage of the {{ interval_pct }} central interval in [{{ cov_lo }}, {{ cov_hi }}]. Under exact
calibration each p-value is uniform, and the coverage of N replicates is Binomial(N, {{ interval }}) / N,
whose central 95% range is the "expected range" column. {{ success_note }}</p>
</section>
<section><h2>Setup</h2>
<p>Each replicate draws all parameters from the model's prior and the data of every cell from its
likelihood (<code>pm.sample_prior_predictive</code>, one draw, seed per model and replicate; continuous
families' sums of squares and a joint model's survey answers are drawn from the same prior draw), fits
the model with nutpie and records the rank of the true value among L = {{ L }} evenly thinned posterior
draws ({{ sampler }}). The intercept prior's centre is fixed, not the data's empirical link-scale mean.
Design: {{ design }}.</p>
<p class="note">Uniformity tests: Pearson χ² on {{ bins }} equal-probability bins of the ranks; the
ECDF-difference test (Säilynoja, Bürkner &amp; Vehtari 2022), statistic the smallest two-sided binomial
tail probability of the ECDF over the L evaluation points, null distribution by {{ sims }} Monte Carlo
samples of uniform ranks. Histograms show the {{ band }} pointwise band of each bin's count; ECDF plots the
95% simultaneous band.</p>
</section>
{% for m in models %}<section><h2>{{ m.label }}</h2>
<p>Diagnostics over all replicates: {{ m.diag }}.</p>
{% for f in m.figs %}<h3>{{ f.label }}</h3><div class="figs">
<img alt="rank histogram of {{ m.name }} {{ f.name }}" src="{{ f.hist }}">
<img alt="ECDF difference of {{ m.name }} {{ f.name }}" src="{{ f.ecdf }}">
<img alt="recovery of {{ m.name }} {{ f.name }}" src="{{ f.recovery }}">
</div>
{% endfor %}</section>
{% endfor %}
</main></body></html>
"""


def _flag(v) -> bool | None:
    """``passes`` as True / False, None when the parameter is not checked (None, NaN or empty)."""
    if v is None or (isinstance(v, float) and np.isnan(v)) or v == "":
        return None
    return bool(v)


def _fmt(v: float, digits: int = 3) -> str:
    return "–" if v is None or not np.isfinite(v) else f"{v:.{digits}f}"


def parameter_label(parameter: str, family: str) -> str:
    """A parameter's name on the page; effects carry their family's link scale."""
    if parameter in ("treatment_effect", "alignment_interaction"):
        scale = FAMILIES[family].link_scale
        per = " per SD" if parameter == "alignment_interaction" else ""
        return f"{LABELS[parameter]} ({scale}{per})"
    return LABELS.get(parameter, parameter)


def model_label(cfg: dict) -> str:
    """e.g. "binomial: binomial stepped wedge, alignment plugged in"."""
    how = "latent survey alignment (joint)" if cfg["propagation"] == "joint" else "alignment plugged in"
    return f"{cfg['name']}: {cfg['family']} stepped wedge, {how}"


def coverage_range(n: int, interval: float, level: float = 0.95) -> tuple[float, float]:
    """Central ``level`` range of the coverage of n calibrated replicates, Binomial(n, interval) / n."""
    a = (1 - level) / 2
    return float(stats.binom.ppf(a, n, interval) / n), float(stats.binom.ppf(1 - a, n, interval) / n)


def _summary_row(r: pd.Series, cfg: dict) -> dict:
    """One model x parameter row of the summary table."""
    v = _flag(r["passes"])
    lo, hi = coverage_range(int(r["replicates"]), float(r["interval"]))
    return {
        "model": r["model"],
        "label": parameter_label(r["parameter"], cfg["family"]),
        "replicates": int(r["replicates"]),
        "chi2_p": _fmt(r["chi2_p"]),
        "ecdf_p": _fmt(r["ecdf_p"]),
        "coverage": f"{r['coverage']:.3f} ({r['coverage_lower']:.3f}–{r['coverage_upper']:.3f})",
        "expected": f"{lo:.3f}–{hi:.3f}",
        "divergent": int(r["replicates_divergent"]),
        "success": f"{r['success_rate']:.3f} ({r['success_lower']:.3f}–{r['success_upper']:.3f})",
        "verdict": "not checked" if not isinstance(v, bool) else ("pass" if v else "fail"),
        "cls": "" if not isinstance(v, bool) else ("pass" if v else "fail"),
    }


def _parameter_figures(ranks: pd.DataFrame, summary: pd.DataFrame, cfg: dict) -> list[dict]:
    """Rank histogram, ECDF difference and recovery plot of every parameter of one model."""
    L, B = int(cfg["ranks"]["draws"]), int(cfg["ranks"]["bins"])
    sims = int(cfg["ranks"]["ecdf_simulations"])
    figs = []
    for i, p in enumerate(cfg["parameters"]):  # the order (and ECDF seeds) of ranks.summarise
        t = ranks[ranks["parameter"] == p]
        if p not in set(summary["parameter"]):
            continue
        test = ecdf_uniformity(t["rank"].to_numpy(int), L, sims, seed=int(cfg["seed"]) + i)
        figs.append(
            {
                "name": p,
                "label": parameter_label(p, cfg["family"]),
                "hist": rank_histogram(t["rank"], L, B, title="Rank histogram"),
                "ecdf": ecdf_difference(test, len(t), title="ECDF difference"),
                "recovery": recovery(
                    t["true"], t["post_mean"], t["lower"], t["upper"], t["covered"], title="Recovery"
                ),
            }
        )
    return figs


def _sampler_diagnostics(ranks: pd.DataFrame) -> str:
    """Divergences, R-hat, ESS and time over one model's replicates, in one sentence."""
    per_rep = ranks.drop_duplicates("replicate")
    if not len(per_rep):
        return "no replicates"
    return (
        f"{int((per_rep['divergences'] > 0).sum())} replicate(s) with divergent transitions "
        f"({int(per_rep['divergences'].sum())} in total); max R-hat {per_rep['r_hat_max'].max():.3f}; "
        f"min bulk ESS {per_rep['ess_bulk_min'].min():.0f}; replicates with R-hat > 1.01: "
        f"{int((per_rep['r_hat_max'] > 1.01).sum())}; sampling time {per_rep['sample_s'].sum():.0f} s "
        f"(+ {per_rep['compile_s'].sum():.0f} s compiling)"
    )


def _success_note(cfg: dict) -> str:
    note = f"Success: posterior probability above {cfg['success']} that the parameter is on one side of 0. "
    if cfg["truth"]:
        return note + (
            "With "
            + ", ".join(f"{k} = {v:g}" for k, v in cfg["truth"].items())
            + " fixed and the other parameters drawn from their priors, the success rate is "
            "simulation-based power at those values (fixed parameters are not calibration checks)."
        )
    return note + (
        "With every parameter drawn from its prior (the analysis prior as design prior), "
        "the success rate is Bayesian assurance."
    )


def _setup(cfg: dict) -> dict:
    """The page's description of the study's shared design, sampler and criteria (``cfg``: the
    study's settings; a model that overrides one says so in its own heading)."""
    d, s, crit = cfg["design"], cfg["sampler"], cfg["criteria"]
    return {
        "success_label": "power at the fixed truth" if cfg["truth"] else "assurance",
        "success_note": _success_note(cfg),
        "bins": int(cfg["ranks"]["bins"]),
        "L": int(cfg["ranks"]["draws"]),
        "sims": int(cfg["ranks"]["ecdf_simulations"]),
        "band": "99%",
        "interval": cfg["interval"],
        "interval_pct": f"{100 * float(cfg['interval']):g}%",
        "p_min": crit["uniformity_p"],
        "cov_lo": crit["coverage"][0],
        "cov_hi": crit["coverage"][1],
        "design": (
            f"{d['clusters']} clusters × {d['periods']} periods stepped wedge, n = {d['n']} patients per "
            "cluster-period, cluster and cluster-period effects, alignment = normal scores per cluster "
            "(plugin) or the latent alignment of a simulated survey (joint)"
        ),
        "sampler": (
            f"{s['chains']} chains × ({s['tune']} tune + {s['draws']} draws), target_accept "
            f"{s['target_accept']}"
        ),
    }


def _model_sections(ranks: pd.DataFrame, summary: pd.DataFrame, cfg: dict) -> list[dict]:
    """One section per model with rows: its label, diagnostics and figures."""
    out = []
    for name, m in cfg["models"].items():
        rows, summ = ranks[ranks["model"] == name], summary[summary["model"] == name]
        if summ.empty:
            continue
        out.append(
            {
                "name": name,
                "label": model_label(m),
                "diag": _sampler_diagnostics(rows),
                "figs": _parameter_figures(rows, summ, m),
            }
        )
    return out


def render_sbc_report(ranks: pd.DataFrame, summary: pd.DataFrame, cfg: dict, out_html: Path) -> None:
    """Write the self-contained SBC page of a study (``cfg``: ``sbc_config``), every model on it."""
    checked = [v for v in map(_flag, summary["passes"]) if v is not None]
    all_pass = bool(checked) and all(checked)
    models = cfg["models"]
    rows = [_summary_row(r, models[r["model"]]) for _, r in summary.iterrows()]
    failing = sorted({r["model"] for r in rows if r["verdict"] == "fail"})
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    html = env.from_string(PAGE).render(
        title=", ".join(summary["model"].unique()) if len(summary) else "no models",
        n_models=summary["model"].nunique(),
        n_reps=int(ranks.groupby("model")["replicate"].nunique().sum()) if len(ranks) else 0,
        generated=_dt.datetime.now().strftime("%Y-%m-%d %H:%M"),
        version=__version__,
        all_pass=all_pass,
        verdict=(
            "All checked parameters of every model pass the calibration criteria."
            if all_pass
            else f"Checked parameters fail the calibration criteria in: {', '.join(failing) or 'none'}."
        ),
        rows=rows,
        models=_model_sections(ranks, summary, cfg),
        **_setup(cfg),
    )
    out_html = Path(out_html)
    out_html.parent.mkdir(parents=True, exist_ok=True)
    out_html.write_text(html, encoding="utf-8")
