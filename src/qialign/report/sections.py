# ruff: noqa: E501  (report prose: long human-readable strings are kept whole for grep-ability)
"""One function per report section: read the results folder, gather numbers, build blocks.

A section is a :class:`Section` (id, title, blocks); a block is a small dict the template renders
by ``kind``: ``p`` (trusted HTML made here, inputs escaped), ``h3``, ``table`` (:class:`Table`),
``figure`` (data URI + caption), ``pre``, ``list``, ``note``, ``cards``, ``details``.

Absent parts (no alignment, one model so no ``loo.csv``, no cross-check) are said in the page;
files the config says must exist but do not are also listed in the "needs attention" box.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from markupsafe import Markup, escape

from qialign.config import models_for
from qialign.data.io import read_results_csv, read_results_parquet
from qialign.families import FAMILIES, LINK_PHRASE
from qialign.ids import ids_key, natural_key, sort_ids
from qialign.methods import label as method_label
from qialign.models.spec import ModelSpec
from qialign.report import figures
from qialign.report.tables import (
    DASH,
    Table,
    count,
    interval_label,
    is_missing,
    num,
    percent,
    triple,
    with_interval,
)
from qialign.results import FEW_EVENTS, MIN_ROLE_RESPONDENTS, PARETO_K_BAD
from qialign.waves import ONE_WAVE, file_order, resolve_wave, wave_label, wave_labels

BAYES = "bayesian"


# --------------------------------------------------------------------------------------------
# reading


def read_csv(path: Path) -> pd.DataFrame | None:
    """The table (ids as text), an empty frame for an empty file, or None when the file does not exist."""
    if not path.is_file():
        return None
    try:
        return read_results_csv(path)
    except pd.errors.EmptyDataError:
        return pd.DataFrame()


def read_json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def read_parquet(path: Path) -> pd.DataFrame | None:
    return read_results_parquet(path) if path.is_file() else None


@dataclass
class Context:
    """Everything the sections share: the results folder, the trial config and display options."""

    results: Path
    cfg: dict
    config_path: Path
    out_html: Path
    logs: list[Path] = field(default_factory=list)
    attention: list[tuple[str, str]] = field(default_factory=list)
    _cache: dict = field(default_factory=dict)

    @property
    def below(self) -> int:
        return int(self.cfg.get("report", {}).get("suppress_below", 5))

    @property
    def outcomes(self) -> list[str]:
        return list(self.cfg["outcomes"])

    def models(self, outcome: str) -> list[str]:
        return [m["id"] for m in models_for(self.cfg, outcome)]

    def primary(self, outcome: str) -> str:
        return self.models(outcome)[0]

    def label(self, outcome: str) -> str:
        return self.cfg["outcomes"][outcome].get("label") or outcome.replace("_", " ")

    def family(self, outcome: str) -> str:
        return self.cfg["outcomes"][outcome]["family"]

    def flag(self, where: str, message: str) -> None:
        if (where, message) not in self.attention:
            self.attention.append((where, message))

    def _get(self, key, fn):
        if key not in self._cache:
            self._cache[key] = fn()
        return self._cache[key]

    def csv(self, *parts: str) -> pd.DataFrame | None:
        return self._get(parts, lambda: read_csv(self.results.joinpath(*parts)))

    def json(self, *parts: str) -> dict | None:
        return self._get(parts, lambda: read_json(self.results.joinpath(*parts)))

    def parquet(self, *parts: str) -> pd.DataFrame | None:
        return self._get(parts, lambda: read_parquet(self.results.joinpath(*parts)))

    def estimates(self, outcome: str, model: str) -> pd.DataFrame | None:
        """Bayesian estimands of one model indexed by estimand (model folder, else the trial table)."""
        est = self.csv(outcome, model, "estimates.csv")
        if est is None:
            allrows = self.csv("estimates.csv")
            if allrows is None or allrows.empty or "outcome" not in allrows:
                return None
            sel = (allrows["outcome"] == outcome) & (allrows["model"].astype(str) == model)
            sel &= allrows["approach"].eq("bayesian")
            est = allrows[sel]
            if est.empty:
                return None
        return est.drop_duplicates("estimand").set_index("estimand")

    def crosscheck(self, outcome: str) -> pd.DataFrame | None:
        cc = self.csv(outcome, "crosscheck.csv")
        if cc is None:
            allrows = self.csv("estimates.csv")
            if allrows is not None and "approach" in allrows and "outcome" in allrows:
                sel = (allrows["outcome"] == outcome) & allrows["approach"].eq("frequentist")
                if sel.any():
                    cc = allrows[sel].copy()
        return cc


@dataclass
class Section:
    id: str
    title: str
    blocks: list[dict]
    lead: str = ""


def P(html) -> dict:
    return {"kind": "p", "html": Markup(html)}


def H3(text: str, id: str = "") -> dict:
    return {"kind": "h3", "text": text, "id": id}


def NOTE(html, tone: str = "info") -> dict:
    return {"kind": "note", "html": Markup(html), "tone": tone}


def FIG(src: str, caption: str, alt: str) -> dict:
    return {"kind": "figure", "src": src, "caption": caption, "alt": alt}


def TAB(table: Table) -> dict:
    return {"kind": "table", "table": table}


def _slug(s: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in s).strip("-").lower()


def _row(est: pd.DataFrame | None, name: str) -> pd.Series | None:
    if est is None or name not in est.index:
        return None
    return est.loc[name]


def _ival(row: pd.Series | None, bayesian: bool = True) -> str:
    if row is None:
        return DASH
    lab = interval_label(row.get("interval"), bayesian=bayesian)
    text = with_interval(row["estimate"], row.get("lower"), row.get("upper"), lab)
    if not is_missing(row["estimate"]) and (is_missing(row.get("lower")) or is_missing(row.get("upper"))):
        if row.get("scale") != "probability":
            text += " (no interval)"
    return text


def _natural_of_link(row: pd.Series | None, family: str) -> str:
    """exp() of a link-scale row's estimate and bounds (interval bounds transform exactly)."""
    if row is None:
        return DASH
    if family == "gaussian":
        return _ival(row)
    e, lo, hi = (
        math.exp(float(row[k])) if not is_missing(row.get(k)) else np.nan
        for k in ("estimate", "lower", "upper")
    )
    return with_interval(e, lo, hi, interval_label(row.get("interval")))


def _natural_name(family: str, est: pd.DataFrame | None) -> str:
    nat = _row(est, "treatment_effect_natural")
    if nat is not None and isinstance(nat.get("scale"), str):
        return nat["scale"]
    return FAMILIES[family].natural_scale


def _verdict(p: float, better: str) -> str:
    if is_missing(p):
        return "The probability that the intervention beat the secular trend was not computed."
    direction = "lower" if better == "lower" else "higher"
    if p >= 0.95:
        return f"The intervention very probably beat the secular trend (outcome {direction} than expected)."
    if p >= 0.8:
        return "The intervention probably beat the secular trend, but the evidence is not strong."
    if p > 0.2:
        return "It is unclear whether the intervention beat the secular trend."
    if p > 0.05:
        return "The intervention probably did not beat the secular trend."
    return "The intervention very probably did worse than the secular trend."


# --------------------------------------------------------------------------------------------
# needs attention


def attention(ctx: Context) -> list[tuple[str, str]]:
    """Scan every fit, diagnostic, LOO and alignment file for problems; return (where, what)."""
    th = ctx.cfg.get("diagnostics", {})
    r_hat_max, ess_min = float(th.get("r_hat_max", 1.01)), float(th.get("ess_bulk_min", 400))
    div_max = int(th.get("divergences_max", 0))
    for outcome in ctx.outcomes:
        if ctx.json(outcome, "prepared.json") is None and ctx.parquet(outcome, "cells.parquet") is None:
            ctx.flag(outcome, "not prepared: prepared.json and cells.parquet are missing")
        for model in ctx.models(outcome):
            where = f"{outcome} / {model}"
            fit = ctx.json(outcome, model, "fit.json")
            if ctx.estimates(outcome, model) is None:
                ctx.flag(where, "no estimates (estimates.csv missing): the fit was not produced")
                continue
            if fit is None:
                ctx.flag(where, "fit.json missing: reliability unknown")
            elif not fit.get("reliable", True):
                reasons = "; ".join(map(str, fit.get("problems") or [])) or "no reason recorded"
                retry = " after one retry" if fit.get("retried") else ""
                ctx.flag(where, f"fit unreliable{retry}: {reasons}")
            if fit is not None and int(fit.get("divergences", 0) or 0) > div_max:
                ctx.flag(where, f"{fit['divergences']} divergent transition(s)")
            diag = ctx.csv(outcome, model, "diagnostics.csv")
            if fit is not None and fit.get("problems"):
                diag = None  # the fit's own problems already name the failed diagnostics
            if diag is not None and not diag.empty:
                name = diag.columns[0]
                if "r_hat" in diag:
                    bad = diag[diag["r_hat"] > r_hat_max]
                    if len(bad):
                        worst = bad.loc[bad["r_hat"].idxmax()]
                        ctx.flag(
                            where,
                            f"R-hat {num(worst['r_hat'], 3)} > {r_hat_max:g} ({worst[name]}, {len(bad)} parameter(s))",
                        )
                if "ess_bulk" in diag:
                    bad = diag[diag["ess_bulk"] < ess_min]
                    if len(bad):
                        worst = bad.loc[bad["ess_bulk"].idxmin()]
                        ctx.flag(
                            where,
                            f"bulk ESS {worst['ess_bulk']:.0f} < {ess_min:g} ({worst[name]}, {len(bad)} parameter(s))",
                        )
        loo = ctx.csv(outcome, "loo.csv")
        if loo is not None and not loo.empty:
            for _, r in loo.iterrows():
                if r["n_pareto_k_bad"] > 0:
                    ctx.flag(
                        f"{outcome} / {r['model']}",
                        f"PSIS-LOO: {int(r['n_pareto_k_bad'])} cell(s) with Pareto k > {PARETO_K_BAD:g} "
                        f"(max {num(r['max_pareto_k'], 2)}): LOO unreliable for this model",
                    )
        cc = ctx.crosscheck(outcome)
        if cc is not None and not cc.empty and "estimate" in cc:
            failed = cc[cc["estimand"].eq("treatment_effect") & cc["estimate"].isna()]
            for _, r in failed.iterrows():
                ctx.flag(f"{outcome} / {r['method']}", f"frequentist cross-check failed: {r.get('note', '')}")
        _answers_disagree(ctx, outcome)
        _few_events(ctx, outcome)
    al = ctx.cfg.get("alignment", {})
    scores = ctx.csv("alignment", "scores.csv")
    if al.get("source", "none") == "none":
        pass  # a deliberate choice, said in the methods and alignment sections, not a problem
    elif scores is None:
        ctx.flag("alignment", "alignment/scores.csv missing")
    elif scores.empty:
        ctx.flag("alignment", "alignment/scores.csv has no scores")
    else:
        _small_role_groups(ctx, scores)
    return ctx.attention


def _answers_disagree(ctx: Context, outcome: str) -> None:
    """Flag a Bayesian primary and the reference cross-check that disagree about 'no effect' (one
    interval excludes 0 and the other does not, or they exclude it on opposite sides)."""
    bayes = _row(ctx.estimates(outcome, ctx.primary(outcome)), "treatment_effect")
    cc = ctx.crosscheck(outcome)
    if bayes is None or cc is None or cc.empty:
        return
    rows = cc[cc["estimand"].eq("treatment_effect") & cc["reference"].eq(True) & cc["estimate"].notna()]
    if rows.empty:
        return
    freq = rows.iloc[0]
    method = freq["method"]

    def side(r) -> int:  # -1 / +1: the interval excludes 0 below / above; 0: it includes 0
        return -1 if r["upper"] < 0 else 1 if r["lower"] > 0 else 0

    if side(bayes) != side(freq):
        words = {-1: "below 0", 1: "above 0", 0: "includes 0"}
        ctx.flag(
            outcome,
            f"Bayesian and frequentist answers differ: θ {num(bayes['estimate'], 3)} "
            f"({num(bayes['lower'], 3)} to {num(bayes['upper'], 3)}, {words[side(bayes)]}) vs "
            f"{_freq_label(method)} {num(freq['estimate'], 3)} ({num(freq['lower'], 3)} to "
            f"{num(freq['upper'], 3)}, {words[side(freq)]})",
        )


def _few_events(ctx: Context, outcome: str) -> None:
    """Flag a binary or count outcome with few events under control or under the intervention."""
    cells = ctx.parquet(outcome, "cells.parquet")
    stat = next((c for c in ("events", "count") if cells is not None and c in cells), None)
    if stat is None:
        return
    by = cells.groupby("treated")[stat].sum().reindex([0, 1], fill_value=0)
    if by.min() < FEW_EVENTS:
        ctx.flag(
            outcome,
            f"few events: {int(by[0])} under control, {int(by[1])} under the intervention "
            f"(fewer than {FEW_EVENTS}): the effect is imprecise and leans on the priors",
        )


# --------------------------------------------------------------------------------------------
# sections


def summary(ctx: Context) -> Section:
    blocks: list[dict] = []
    cards = []
    overview = Table(
        [
            "Outcome",
            "Primary model",
            "Effect beyond the secular trend",
            "P(beats trend)",
            "Alignment: change per SD",
            "Fit",
        ],
        [],
        caption="Key numbers per outcome (primary model, effect at mean alignment).",
    )
    for outcome in ctx.outcomes:
        fam, model = ctx.family(outcome), ctx.primary(outcome)
        better = ctx.cfg["outcomes"][outcome].get("better", "lower")
        est = ctx.estimates(outcome, model)
        fit = ctx.json(outcome, model, "fit.json") or {}
        lines = []
        if est is None:
            lines.append(NOTE("No estimates for the primary model: see “needs attention”.", "bad"))
            overview.rows.append([ctx.label(outcome), model, DASH, DASH, DASH, "missing"])
            cards.append(
                {
                    "title": ctx.label(outcome),
                    "id": f"summary-{_slug(outcome)}",
                    "headline": "no result",
                    "blocks": lines,
                    "tone": "bad",
                }
            )
            continue
        nat = _row(est, "treatment_effect_natural")
        link = _row(est, "treatment_effect")
        prob = _row(est, "prob_beats_trend")
        gamma = _row(est, "alignment_interaction")
        low, high = _row(est, "effect_low_alignment"), _row(est, "effect_high_alignment")
        marg = _row(est, "marginal_difference")
        natname = _natural_name(fam, est)
        p = float(prob["estimate"]) if prob is not None else np.nan
        headline = f"{natname} {_ival(nat)}" if nat is not None else DASH
        lines.append(P(f"<strong>{escape(_verdict(p, better))}</strong>"))
        items = [
            f"Effect beyond the secular trend (at mean alignment): <span class='num'>{escape(natname)} {escape(_ival(nat))}</span>"
            + (
                f"; on the link scale {escape(LINK_PHRASE.get(link['scale'], link['scale']))} "
                f"<span class='num'>{escape(_ival(link))}</span>"
                if link is not None
                else ""
            ),
            f"Probability the intervention beats the trend (outcome {better} than expected): "
            f"<span class='num'>{escape(percent(p))}</span>",
        ]
        if marg is not None:
            items.append(
                f"Average absolute effect in the analysed population ({escape(marg['scale'])}): "
                f"<span class='num'>{escape(_ival(marg))}</span>"
            )
        if gamma is not None:
            lp = LINK_PHRASE.get(gamma["scale"], gamma["scale"])
            txt = (
                f"Alignment: per 1 SD higher clinical-managerial alignment the {escape(lp)} changes by "
                f"<span class='num'>{escape(_ival(gamma))}</span>"
            )
            if fam != "gaussian":
                txt += f" (the {escape(natname)} is multiplied by <span class='num'>{escape(_natural_of_link(gamma, fam))}</span>)"
            items.append(txt)
            if low is not None and high is not None:
                items.append(
                    f"At low alignment (10th percentile of clusters): {escape(lp)} <span class='num'>{escape(_ival(low))}</span>"
                    + (
                        f", {escape(natname)} ≈ <span class='num'>{escape(_natural_of_link(low, fam))}</span>"
                        if fam != "gaussian"
                        else ""
                    )
                    + f"; at high alignment (90th percentile): <span class='num'>{escape(_ival(high))}</span>"
                    + (
                        f", {escape(natname)} ≈ <span class='num'>{escape(_natural_of_link(high, fam))}</span>"
                        if fam != "gaussian"
                        else ""
                    )
                )
        else:
            items.append(
                "Alignment: not in this model (no alignment scores, or the model has no alignment moderator)."
            )
        cc = ctx.crosscheck(outcome)
        if cc is not None and not cc.empty:
            nat_cc = cc[cc["estimand"].eq("treatment_effect_natural") & cc["reference"].eq(True)]
            for _, r in nat_cc[nat_cc["estimate"].notna()].iterrows():
                items.append(
                    f"Frequentist cross-check ({escape(_freq_label(r['method']))}): "
                    f"<span class='num'>{escape(_ival(r, bayesian=False))}</span>"
                )
        lines.append({"kind": "list", "items": [Markup(i) for i in items]})
        reliable = fit.get("reliable")
        if reliable is False:
            lines.append(
                NOTE("The primary fit is flagged unreliable; treat these numbers with caution.", "bad")
            )
        cards.append(
            {
                "title": ctx.label(outcome),
                "id": f"summary-{_slug(outcome)}",
                "headline": headline,
                "sub": f"model {model}; {fam}",
                "blocks": lines,
                "tone": "bad" if reliable is False else "",
            }
        )
        overview.rows.append(
            [
                ctx.label(outcome),
                model,
                headline,
                percent(p),
                _ival(gamma) if gamma is not None else DASH,
                "reliable" if reliable else ("UNRELIABLE" if reliable is False else "unknown"),
            ]
        )
        overview.row_classes.append("bad" if reliable is False else "")
    blocks.append({"kind": "cards", "cards": cards})
    blocks.append(TAB(overview))
    lead = (
        "Effects are over and above the secular (calendar-time) trend, at the clusters' mean "
        "alignment, from the primary model (the first in the trial's <code>models</code> list). "
        "CrI: Bayesian credible interval; CI: frequentist confidence interval."
    )
    return Section("summary", "Summary", blocks, lead)


PROPAGATION_TEXT = {
    "plugin": "Propagation <strong>plugin</strong>: each cluster's posterior-mean alignment is used as if "
    "known, so the measurement error of the survey is not carried into γ (rows <code>bayes</code>).",
    "draws": "Propagation <strong>draws</strong>: the outcome model is refitted over posterior draws of "
    "alignment and the posteriors pooled (method of composition), carrying the survey's measurement error "
    "into γ; the survey does not learn from the outcome (rows <code>bayes_draws</code>).",
    "joint": "Propagation <strong>joint</strong>: the survey's measurement model and the outcome model are "
    "one graph, so alignment and γ are estimated together (rows <code>bayes_joint</code>).",
}


def _freq_label(method: str) -> str:
    return method_label(method)


def _cell_matrix(ctx: Context):
    """Clusters (grouped by site), periods, treated and n matrices from data.json and cells."""
    data = ctx.json("data.json") or {}
    clusters = data.get("clusters") or []
    source = None
    for outcome in ctx.outcomes:
        cells = ctx.parquet(outcome, "cells.parquet")
        if cells is not None and not cells.empty:
            source = outcome
            break
    cp = None
    if source is not None:
        cells = ctx.parquet(source, "cells.parquet")
        cp = cells.groupby(["cluster", "period"], as_index=False).agg(
            n=("n", "sum"), treated=("treated", "max")
        )
    if not clusters and cp is not None:
        sites = (
            ctx.parquet(source, "cells.parquet").groupby("cluster")["site"].first() if "site" in cells else {}
        )
        clusters = [
            {"cluster": c, "site": sites.get(c, "") if len(sites) else ""} for c in sort_ids(cp["cluster"])
        ]
    periods = data.get("periods") or (sorted(cp["period"].unique().tolist()) if cp is not None else [])
    clusters = sorted(clusters, key=lambda c: (natural_key(c.get("site") or ""), natural_key(c["cluster"])))
    names = [(str(c["cluster"]), str(c.get("site") or "")) for c in clusters]
    treated = np.full((len(names), len(periods)), np.nan)
    n = np.full_like(treated, np.nan)
    for i, c in enumerate(clusters):
        start = c.get("start_period")
        for j, t in enumerate(periods):
            treated[i, j] = 1.0 if start is not None and not is_missing(start) and t >= start else 0.0
    if cp is not None:
        idx = {c: i for i, (c, _) in enumerate(names)}
        pidx = {t: j for j, t in enumerate(periods)}
        n[:] = np.nan
        seen = np.zeros_like(treated, bool)
        for r in cp.itertuples():
            if r.cluster in idx and r.period in pidx:
                n[idx[r.cluster], pidx[r.period]] = r.n
                seen[idx[r.cluster], pidx[r.period]] = True
        treated[~seen] = np.nan
    return names, periods, treated, n, source


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def design(ctx: Context) -> Section:
    blocks = []
    names, periods, treated, n, source = _cell_matrix(ctx)
    d = ctx.cfg["design"].replace("_", " ")
    sites = sorted({s for _, s in names if s})
    starts = [c for c in (ctx.json("data.json") or {}).get("clusters", []) if c.get("start_period") is None]
    blocks.append(
        P(
            f"Design: <strong>{escape(d)}</strong>; {_plural(len(names), 'cluster')}"
            + (f" in {_plural(len(sites), 'site')}" if sites else "")
            + f", {_plural(len(periods), 'period')}"
            + (f"; {_plural(len(starts), 'cluster')} never start (controls)" if starts else "")
            + "."
        )
    )
    if names and periods:
        uri = figures.design_grid(names, periods, treated, n, ctx.below)
        cap = (
            "Clusters (rows, grouped by site) by period. Shaded: intervention; light: control; white: no data. "
            f"Numbers: patients (or cluster-period units) analysed for “{ctx.label(source)}”; counts under "
            f"{ctx.below} shown as “<{ctx.below}”."
            if source
            else "Clusters by period (no prepared cells found, so no cell sizes)."
        )
        blocks.append(FIG(uri, cap, "Design diagram: clusters by periods, control and intervention cells"))
    else:
        blocks.append(NOTE("No cluster or period information found (data.json and cells missing).", "bad"))
    if (ctx.results / "validation.txt").is_file():
        blocks.append(
            P(
                f"Full validation summary: <a href='{escape(_rel(ctx, ctx.results / 'validation.txt'))}'>validation.txt</a>."
            )
        )
    return Section("design", "Design", blocks)


def _rel(ctx: Context, path: Path) -> str:
    return Path(os.path.relpath(Path(path).resolve(), ctx.out_html.resolve().parent)).as_posix()


def data_flow(ctx: Context) -> Section:
    data = ctx.json("data.json") or {}
    excl = data.get("exclusions", {})
    t = Table(
        [
            "Outcome",
            "Table",
            "Rows read",
            "Missing outcome",
            "Missing covariate",
            "Analysed",
            "Cells (cluster-period × covariates)",
            "Covariates",
        ],
        [],
        numeric={2, 3, 4, 5, 6},
        caption=f"From the data files to the analysed rows. Counts under {ctx.below} are shown as “<{ctx.below}”.",
    )
    for outcome in ctx.outcomes:
        prep = ctx.json(outcome, "prepared.json") or {}
        e = excl.get(outcome) or prep.get("exclusions") or {}
        if not e:
            t.rows.append([ctx.label(outcome), DASH, DASH, DASH, DASH, DASH, DASH, "no record"])
            continue
        by_cov = e.get("missing_by_covariate") or {}
        miss_cov = count(e.get("missing_covariate"), ctx.below)
        if by_cov and e.get("missing_covariate"):
            miss_cov += " (" + ", ".join(f"{k}: {count(v, ctx.below)}" for k, v in by_cov.items() if v) + ")"
        t.rows.append(
            [
                ctx.label(outcome),
                str(e.get("table", DASH)),
                count(e.get("read"), ctx.below),
                count(e.get("missing_outcome"), ctx.below),
                miss_cov,
                count(e.get("analysed", prep.get("rows")), ctx.below),
                count(prep.get("cells"), ctx.below),
                ", ".join(e.get("covariates") or prep.get("covariates") or []) or "none",
            ]
        )
    blocks = [
        TAB(t),
        P(
            "Rows with a missing outcome or a missing covariate are excluded from that outcome's analysis "
            "(complete cases); the other outcomes keep them."
        ),
    ]
    return Section("data-flow", "Data flow", blocks)


def _wmean(x, w, log=False):
    x, w = np.asarray(x, float), np.asarray(w, float)
    ok = np.isfinite(x) & (w > 0)
    if not ok.any():
        return np.nan
    if log:
        return float(np.exp(np.sum(w[ok] * np.log(x[ok])) / w[ok].sum()))
    return float(np.sum(w[ok] * x[ok]) / w[ok].sum())


def _rate_factor(ctx: Context, outcome: str) -> pd.DataFrame | None:
    """n / exposure per cluster-period (to turn counts per patient into rates per exposure unit)."""
    cells = ctx.parquet(outcome, "cells.parquet")
    if cells is None or "exposure" not in cells:
        return None
    g = cells.groupby(["cluster", "period"], as_index=False)[["n", "exposure"]].sum()
    g["factor"] = g["n"] / g["exposure"]
    return g[["cluster", "period", "factor"]]


def _outcome_ylabel(ctx: Context, outcome: str) -> str:
    fam, o = ctx.family(outcome), ctx.cfg["outcomes"][outcome]
    unit = o.get("unit") or ""
    if fam in ("bernoulli", "binomial"):
        return "proportion"
    if fam in ("poisson", "negative_binomial"):
        exp = o.get("exposure")
        return (
            f"rate per {exp.replace('_', ' ')[:-1] if exp and exp.endswith('s') else exp}"
            if exp
            else "count per patient"
        )
    if fam == "lognormal":
        return f"geometric mean{f' ({unit})' if unit else ''}"
    return f"mean{f' ({unit})' if unit else ''}"


def time_trends(ctx: Context) -> Section:
    blocks = [
        P(
            "Observed outcome per period, cells aggregated by arm (dot area ∝ patients), with what the primary "
            "model expects without the intervention: over all clusters (the secular trend as the model "
            "sees it, for these clusters) and, for the clusters already under the intervention, the counterfactual "
            "next to the model fit."
        )
    ]
    for outcome in ctx.outcomes:
        fam, model = ctx.family(outcome), ctx.primary(outcome)
        blocks.append(H3(ctx.label(outcome), f"trend-{_slug(outcome)}"))
        log = fam == "lognormal"
        cf = ctx.csv(outcome, model, "counterfactual.csv")
        factor = _rate_factor(ctx, outcome) if fam in ("poisson", "negative_binomial") else None
        if cf is not None and not cf.empty:
            cf = cf.copy()
            if factor is not None:
                cf = cf.merge(factor, on=["cluster", "period"], how="left")
                for c in [c for c in cf if c == "observed" or c.endswith(("_mean", "_lower", "_upper"))]:
                    cf[c] = cf[c] * cf["factor"]
            rows = []
            for t, g in cf.groupby("period"):
                c, i = g[g["treated"] == 0], g[g["treated"] == 1]
                rows.append(
                    {
                        "period": t,
                        "observed_control": _wmean(c["observed"], c["n"], log),
                        "observed_intervention": _wmean(i["observed"], i["n"], log),
                        "n_control": c["n"].sum(),
                        "n_intervention": i["n"].sum(),
                        "without_all": _wmean(g["without_mean"], g["n"], log),
                        "without_all_lower": _wmean(g["without_lower"], g["n"], log),
                        "without_all_upper": _wmean(g["without_upper"], g["n"], log),
                        "without_treated": _wmean(i["without_mean"], i["n"], log) if len(i) else np.nan,
                        "actual_treated": _wmean(i["actual_mean"], i["n"], log) if len(i) else np.nan,
                        "deseasonalised": (
                            _wmean(g["deseasonalised_mean"], g["n"], log)
                            if "deseasonalised_mean" in g
                            else np.nan
                        ),
                    }
                )
            bp = pd.DataFrame(rows)
            note = "band: n-weighted average of the cluster-period intervals (approximate)"
            uri = figures.time_series(bp, _outcome_ylabel(ctx, outcome), band_note=note)
            blocks.append(
                FIG(
                    uri,
                    f"{ctx.label(outcome)} over calendar time by arm, with the expected course "
                    f"without the intervention (model {model}).",
                    f"{ctx.label(outcome)} over time",
                )
            )
        else:
            cells = ctx.parquet(outcome, "cells.parquet")
            blocks.append(
                NOTE(f"No counterfactual.csv for model {escape(model)}: observed data only, no fitted trend.")
            )
            if cells is None or cells.empty:
                blocks.append(NOTE("No prepared cells either.", "bad"))
                continue
            bp = _observed_by_period(cells, fam)
            uri = figures.time_series(bp, _outcome_ylabel(ctx, outcome))
            blocks.append(
                FIG(
                    uri,
                    f"{ctx.label(outcome)} over calendar time by arm (observed).",
                    f"{ctx.label(outcome)} over time",
                )
            )
    return Section("time-trends", "Outcome over time", blocks)


def _observed_by_period(cells: pd.DataFrame, fam: str) -> pd.DataFrame:
    stat = FAMILIES[fam].total_column
    den = "exposure" if stat == "count" and "exposure" in cells else "n"
    rows = []
    for t, g in cells.groupby("period"):
        row = {"period": t}
        for arm, name in ((0, "control"), (1, "intervention")):
            a = g[g["treated"] == arm]
            v = a[stat].sum() / a[den].sum() if len(a) and a[den].sum() > 0 else np.nan
            row[f"observed_{name}"] = math.exp(v) if fam == "lognormal" and not is_missing(v) else v
            row[f"n_{name}"] = a["n"].sum()
        rows.append(row)
    return pd.DataFrame(rows)


def effects(ctx: Context) -> Section:
    blocks = [
        P(
            "Bayesian and frequentist estimates side by side. θ: effect of the intervention over and above the "
            "secular trend at mean alignment (link scale, and natural scale after back-transformation); "
            "γ: change in θ per SD of alignment (link scale)."
        )
    ]
    for outcome in ctx.outcomes:
        fam = ctx.family(outcome)
        blocks.append(H3(ctx.label(outcome), f"effects-{_slug(outcome)}"))
        primary = ctx.primary(outcome)
        est0 = ctx.estimates(outcome, primary)
        natname = _natural_name(fam, est0)
        linkname = (
            LINK_PHRASE.get(_row(est0, "treatment_effect")["scale"], "link scale")
            if _row(est0, "treatment_effect") is not None
            else "link scale"
        )
        t = Table(
            [
                "Method",
                "Model / estimator",
                f"θ ({linkname})",
                f"θ ({natname})",
                "γ per SD alignment",
                "R-hat (θ)",
                "ESS bulk (θ)",
            ],
            [],
            caption="Bayesian rows: posterior mean and credible interval; frequentist rows: estimate and 95% CI.",
        )
        for model in ctx.models(outcome):
            est = ctx.estimates(outcome, model)
            if est is None:
                t.rows.append(["Bayesian", model, "not produced", DASH, DASH, DASH, DASH])
                t.row_classes.append("bad")
                continue
            th = _row(est, "treatment_effect")
            t.rows.append(
                [
                    "Bayesian",
                    model + (" (primary)" if model == primary else ""),
                    _ival(th),
                    _ival(_row(est, "treatment_effect_natural")),
                    _ival(_row(est, "alignment_interaction")),
                    num(th.get("r_hat"), 3) if th is not None else DASH,
                    f"{th['ess_bulk']:.0f}"
                    if th is not None and not is_missing(th.get("ess_bulk"))
                    else DASH,
                ]
            )
            t.row_classes.append("primary" if model == primary else "")
        cc = ctx.crosscheck(outcome)
        if cc is None or cc.empty:
            cc_note = NOTE("No frequentist cross-check for this outcome (crosscheck.csv absent).")
        else:
            cc_note = None
            for method, g in cc.groupby("method", sort=False):
                g = g.set_index("estimand")
                r = {
                    k: (g.loc[k] if k in g.index else None)
                    for k in ("treatment_effect", "treatment_effect_natural", "alignment_interaction")
                }
                t.rows.append(
                    [
                        "Frequentist",
                        _freq_label(str(method)),
                        *(_ival(r[k], bayesian=False) for k in r),
                        DASH,
                        DASH,
                    ]
                )
                t.row_classes.append("freq")
        lead = _effects_forest(ctx, outcome, primary)
        if lead is not None:
            blocks.append(lead)
        summary = f"All estimates: {len(t.rows)} rows (every Bayesian model and frequentist cross-check)"
        blocks.append({"kind": "details", "summary": summary, "blocks": [TAB(t)]})
        if cc_note:
            blocks.append(cc_note)
        if est0 is not None:
            blocks.append(_all_estimands(est0, primary))
        # exposure-time curve
        mcfg = next(m for m in models_for(ctx.cfg, outcome) if m["id"] == primary)
        exposures = {m["id"]: m.get("exposure", "step") for m in models_for(ctx.cfg, outcome)}
        shown = False
        for model, shape in exposures.items():
            if shape != "eti":
                continue
            curve = _eti_curve(ctx, outcome, model)
            if curve is not None:
                lab = (
                    LINK_PHRASE.get(
                        _row(ctx.estimates(outcome, model), "treatment_effect")["scale"], "effect"
                    )
                    if ctx.estimates(outcome, model) is not None
                    else "effect"
                )
                uri = figures.exposure_curve(
                    curve["e"], curve["estimate"], curve["lower"], curve["upper"], lab
                )
                note = " (internal standardised scale)" if fam in ("gaussian", "lognormal") else ""
                blocks.append(
                    FIG(
                        uri,
                        f"Effect by exposure time, model {model}{note}; θ is their unweighted mean.",
                        "Effect by exposure time",
                    )
                )
                shown = True
        if not shown:
            shape = mcfg.get("exposure", "step")
            desc = {
                "step": "an immediate step: the full effect from a cluster's first intervention period",
                "ramp": f"a linear ramp reaching the full effect after {mcfg.get('ramp_periods', 2)} period(s)",
                "eti": "one effect per exposure time (no per-exposure-time results found)",
            }[shape]
            blocks.append(
                P(f"Exposure time: the primary model assumes {escape(desc)}; no exposure-time curve.")
            )
        # forest
        ce = ctx.csv(outcome, primary, "cluster_effects.csv")
        if ce is not None and not ce.empty and ce["estimate"].nunique() == 1:
            blocks.append(
                NOTE(
                    f"Model {escape(primary)} gives every cluster the same effect θ (no alignment "
                    "moderator and no cluster-specific effects): no forest plot of cluster effects."
                )
            )
        elif ce is not None and not ce.empty:
            natural = "natural_estimate" in ce
            cols = (
                ("natural_estimate", "natural_lower", "natural_upper")
                if natural
                else ("estimate", "lower", "upper")
            )
            nat = _row(est0, "treatment_effect_natural") if natural else _row(est0, "treatment_effect")
            overall = (
                (float(nat["estimate"]), float(nat["lower"]), float(nat["upper"]))
                if nat is not None
                else None
            )
            log = natural and fam != "gaussian"
            ce = ce.sort_values("cluster", key=ids_key)
            uri = figures.forest(
                [
                    f"{c} ({s})" if "site" in ce and not is_missing(s) else str(c)
                    for c, s in zip(ce["cluster"], ce.get("site", ce["cluster"]), strict=True)
                ],
                *(ce[c].to_numpy(float) for c in cols),
                xlabel=ce["natural_scale"].iloc[0] if natural else str(ce["scale"].iloc[0]),
                overall=overall,
                null=1.0 if log else 0.0,
                log=log,
                better=ctx.cfg["outcomes"][outcome].get("better", "lower"),
            )
            blocks.append(
                FIG(
                    uri,
                    f"Cluster-specific effects (θ + γ·z_j + δ_j), model {primary}, with intervals; "
                    "diamond: effect at mean alignment.",
                    "Forest plot of cluster-specific effects",
                )
            )
        else:
            blocks.append(NOTE(f"No cluster_effects.csv for model {escape(primary)}."))
    return Section("effects", "Effects", blocks)


def _true_effect(ctx: Context, outcome: str) -> float | None:
    """The simulated treatment effect (link scale) of a synthetic trial, from its truth.json."""
    if not ctx.cfg.get("synthetic"):
        return None
    truth = read_json(Path(ctx.cfg["data"]["clusters"]).parent / "truth.json")
    value = ((truth or {}).get("outcomes", {}).get(outcome) or {}).get("treatment_effect")
    return None if value is None else float(value)


def _effects_forest(ctx: Context, outcome: str, primary: str) -> dict | None:
    """The lead figure of an outcome: θ of every Bayesian model (primary first) and of the reference
    frequentist cross-check, on the natural scale (link scale for gaussian), the truth if synthetic."""
    natural = ctx.family(outcome) != "gaussian"
    name = "treatment_effect_natural" if natural else "treatment_effect"
    rows = []
    for model in sorted(ctx.models(outcome), key=lambda m: m != primary):
        r = _row(ctx.estimates(outcome, model), name)
        if r is not None:
            rows.append((f"Bayesian, {model}" + (" (primary)" if model == primary else ""), r))
    cc = ctx.crosscheck(outcome)
    if cc is not None and not cc.empty:
        fr = cc[cc["estimand"].eq(name) & cc["reference"].eq(True) & cc["estimate"].notna()]
        for _, r in fr.iterrows():
            rows.append((_freq_label(r["method"]), r))
    if not rows:
        return None
    truth = _true_effect(ctx, outcome)
    if truth is not None and natural:
        truth = float(np.exp(truth))
    uri = figures.forest(
        [label for label, _ in rows],
        *(np.array([float(r[k]) for _, r in rows]) for k in ("estimate", "lower", "upper")),
        xlabel=str(rows[0][1]["scale"]),
        null=1.0 if natural else 0.0,
        log=natural,
        better=ctx.cfg["outcomes"][outcome].get("better", "lower"),
        truth=truth,
    )
    caption = "Effect over and above the secular trend at mean alignment, with intervals"
    caption += "; dotted line: the true simulated value (synthetic data)." if truth is not None else "."
    return FIG(uri, caption, f"Forest plot of the effect estimates for {ctx.label(outcome)}")


def _all_estimands(est: pd.DataFrame, model: str) -> dict:
    t = Table(["Estimand", "Scale", "Estimate", "Interval", "R-hat", "ESS bulk"], [], numeric={2, 4, 5})
    for name, r in est.iterrows():
        e, lo, hi = triple(r["estimate"], r.get("lower"), r.get("upper"))
        if name == "prob_beats_trend":
            e = percent(r["estimate"])
        ival = DASH if is_missing(r.get("lower")) else f"{lo} to {hi}"
        t.rows.append(
            [
                str(name),
                str(r.get("scale", "")),
                e,
                ival,
                num(r.get("r_hat"), 3),
                DASH if is_missing(r.get("ess_bulk")) else f"{r['ess_bulk']:.0f}",
            ]
        )
    return {"kind": "details", "summary": f"All estimands of model {model}", "blocks": [TAB(t)]}


def _eti_curve(ctx: Context, outcome: str, model: str) -> pd.DataFrame | None:
    """Per-exposure-time effects: exposure_effects.csv if written, else theta_e rows of diagnostics.csv."""
    ex = ctx.csv(outcome, model, "exposure_effects.csv")
    if ex is not None and not ex.empty and {"exposure_time", "estimate", "lower", "upper"} <= set(ex):
        return ex.rename(columns={"exposure_time": "e"})
    diag = ctx.csv(outcome, model, "diagnostics.csv")
    if diag is None or diag.empty:
        return None
    name = diag.columns[0]
    rows = diag[diag[name].astype(str).str.startswith("theta_e")].copy()
    if rows.empty:
        return None
    lo = next((c for c in rows if c.endswith(("_lb", "2.5%")) or c.startswith("eti") and "lb" in c), None)
    hi = next((c for c in rows if c.endswith(("_ub", "97.5%")) or c.startswith("eti") and "ub" in c), None)
    e = rows[name].astype(str).str.extract(r"\[(\d+)\]")[0]
    out = pd.DataFrame(
        {
            "e": pd.to_numeric(e, errors="coerce")
            .fillna(pd.Series(range(1, len(rows) + 1), index=rows.index))
            .to_numpy(),
            "estimate": rows["mean"].to_numpy(float),
            "lower": rows[lo].to_numpy(float) if lo else np.nan,
            "upper": rows[hi].to_numpy(float) if hi else np.nan,
        }
    )
    return out


def _moderator_wave(al: dict, scores: pd.DataFrame) -> str:
    """The label of the wave that moderates the effect: ``alignment.wave``, else the first wave in the
    order ``scores.csv`` records (:func:`qialign.waves.resolve_wave`)."""
    try:
        return resolve_wave(al.get("wave"), file_order(scores))
    except ValueError:  # the configured wave is not scored: the section says so
        return wave_label(al.get("wave")) or ONE_WAVE


def alignment(ctx: Context) -> Section:
    al = ctx.cfg.get("alignment", {})
    blocks: list[dict] = []
    scores = ctx.csv("alignment", "scores.csv")
    if al.get("source", "none") == "none":
        blocks.append(
            NOTE(
                "No alignment source is configured (<code>alignment.source: none</code>): the effect is "
                "not modelled as depending on clinical-managerial alignment.",
                "bad",
            )
        )
        return Section("alignment", "Alignment", blocks)
    if scores is None or scores.empty:
        blocks.append(NOTE("No alignment scores were found (alignment/scores.csv missing or empty).", "bad"))
        return Section("alignment", "Alignment", blocks)
    wave = _moderator_wave(al, scores)
    method = str(scores["method"].iloc[0]) if "method" in scores else al.get("method", "")
    blocks.append(
        P(
            f"Source: <strong>{escape(al['source'])}</strong>, method <strong>{escape(method)}</strong>; "
            f"wave {escape(wave)} moderates the effect. Alignment enters the models standardised over clusters "
            "(mean 0, SD 1), so γ is per SD of alignment. "
            + PROPAGATION_TEXT.get(al.get("propagation", "plugin"), "")
        )
    )
    domains = list(al.get("domains", {}))
    sw = scores[wave_labels(scores["wave"]) == wave] if "wave" in scores else scores
    if sw.empty:
        sw = scores
        blocks.append(NOTE(f"No scores for wave {escape(wave)}; showing all waves.", "bad"))
    if domains and all(f"clinical_{d}" in sw for d in domains):
        vals = sw[[f"{r}_{d}" for r in ("clinical", "managerial") for d in domains]].to_numpy(float)
        scale = (
            "domain score (0–100)" if np.nanmax(vals) > al.get("scale", {}).get("max", 5) else "domain mean"
        )
        prof = sw.sort_values("cluster", key=ids_key)
        blocks.append(
            FIG(
                figures.alignment_profiles(prof, domains, scale),
                f"Survey profiles by role, wave {escape(wave)}: mean domain scores of clinical and managerial staff per cluster.",
                "Survey profiles by role per cluster",
            )
        )
    cols = [
        "Cluster",
        "Wave",
        "Alignment",
        "Interval",
        "Clinical respondents",
        "Managerial respondents",
        "Profile r",
        "r_wg clinical",
        "r_wg managerial",
    ]
    t = Table(
        cols,
        [],
        numeric={2, 4, 5, 6, 7, 8},
        caption=f"Alignment scores (higher = more aligned). Respondent counts under {ctx.below} shown as “<{ctx.below}”.",
    )
    by = [c for c in ("wave_order", "cluster") if c in scores]  # waves in their recorded order
    for _, r in scores.sort_values(by, key=ids_key, kind="stable").iterrows():
        e, lo, hi = triple(r["alignment"], r.get("lower"), r.get("upper"))
        t.rows.append(
            [
                str(r["cluster"]),
                str(r.get("wave", DASH)),
                e,
                DASH if is_missing(r.get("lower")) else f"{lo} to {hi}",
                count(r.get("n_clinical"), ctx.below),
                count(r.get("n_managerial"), ctx.below),
                num(r.get("profile_r"), 2),
                num(r.get("rwg_clinical"), 2),
                num(r.get("rwg_managerial"), 2),
            ]
        )
    blocks.append(
        FIG(
            figures.ranked_intervals(
                sw["cluster"].tolist(),
                sw["alignment"],
                sw.get("lower", np.nan * sw["alignment"]),
                sw.get("upper", np.nan * sw["alignment"]),
                f"alignment (wave {wave})",
            ),
            "Alignment per cluster, ranked, with bootstrap intervals.",
            "Ranked alignment scores",
        )
    )
    blocks.append(TAB(t))
    blocks += _alignment_change(ctx)
    for outcome in ctx.outcomes:
        model = ctx.primary(outcome)
        est = ctx.estimates(outcome, model)
        ce = ctx.csv(outcome, model, "cluster_effects.csv")
        blocks.append(H3(f"{ctx.label(outcome)}: effect against alignment", f"moderation-{_slug(outcome)}"))
        if est is None or ce is None or ce.empty or "alignment_z" not in ce or ce["alignment_z"].isna().all():
            blocks.append(NOTE("No cluster effects with alignment for the primary model."))
            continue
        th, lo, hi = (
            _row(est, k) for k in ("treatment_effect", "effect_low_alignment", "effect_high_alignment")
        )
        line = None
        z = ce["alignment_z"].to_numpy(float)
        if th is not None and lo is not None and hi is not None:
            q10, q90 = np.quantile(z, [0.1, 0.9])
            pts = [(q10, lo), (0.0, th), (q90, hi)]
            line = pd.DataFrame(
                [
                    {"z": zz, "estimate": r["estimate"], "lower": r["lower"], "upper": r["upper"]}
                    for zz, r in pts
                ]
            )
        uri = figures.moderation(
            z,
            ce["estimate"].to_numpy(float),
            ce["lower"].to_numpy(float),
            ce["upper"].to_numpy(float),
            ce["cluster"].tolist(),
            line,
            LINK_PHRASE.get(str(ce["scale"].iloc[0]), str(ce["scale"].iloc[0])),
        )
        blocks.append(
            FIG(
                uri,
                f"Cluster-specific effects (link scale) against standardised alignment, model {model}; line: "
                "θ + γ·z; band through the intervals at the 10th percentile, mean and 90th percentile of z.",
                "Cluster effects against alignment",
            )
        )
    return Section("alignment", "Alignment", blocks)


def _alignment_change(ctx: Context) -> list[dict]:
    """One ranked-interval figure per later wave: each cluster's change in alignment since the first
    wave (change.csv), when the survey has two waves or more."""
    change = ctx.csv("alignment", "change.csv")
    if change is None or change.empty:
        return []
    blocks = []
    for (w_from, w_to), g in change.groupby(["wave_from", "wave_to"], sort=False):
        g = g.dropna(subset=["difference"])
        if g.empty:
            continue
        uri = figures.ranked_intervals(
            g["cluster"].astype(str).tolist(),
            g["difference"],
            g.get("lower", np.nan * g["difference"]),
            g.get("upper", np.nan * g["difference"]),
            f"change in alignment, wave {w_from} to wave {w_to}",
        )
        caption = (
            f"Change in alignment per cluster from wave {w_from} to wave {w_to}, with intervals (ranked)."
        )
        blocks.append(FIG(uri, escape(caption), "Change in alignment between survey waves"))
    return blocks


def _small_role_groups(ctx: Context, scores: pd.DataFrame) -> None:
    """Flag clusters whose clinical or managerial group has under MIN_ROLE_RESPONDENTS answers: their
    score and its interval rest on one or two people."""
    counts = [c for c in ("n_clinical", "n_managerial") if c in scores]
    if not counts:
        return
    small = scores[(scores[counts] < MIN_ROLE_RESPONDENTS).any(axis=1)]
    if small.empty:
        return
    shown = ", ".join(
        f"{r['cluster']} (wave {r.get('wave', '?')}: "
        + ", ".join(f"{c[2:]} {int(r[c])}" for c in counts if r[c] < MIN_ROLE_RESPONDENTS)
        + ")"
        for _, r in small.head(6).iterrows()
    )
    more = f" and {len(small) - 6} more" if len(small) > 6 else ""
    ctx.flag(
        "alignment",
        f"role groups with fewer than {MIN_ROLE_RESPONDENTS} respondents: {shown}{more}; their scores and "
        "intervals rest on one or two people",
    )


def model_checks(ctx: Context) -> Section:
    th = ctx.cfg.get("diagnostics", {})
    blocks = [
        P(
            f"Thresholds: R-hat ≤ {th.get('r_hat_max', 1.01)}, bulk and tail ESS ≥ {th.get('ess_bulk_min', 400):g} / "
            f"{th.get('ess_tail_min', 400):g}, divergences ≤ {th.get('divergences_max', 0)}, E-BFMI ≥ {th.get('ebfmi_min', 0.3)}. "
            "A fit that fails is retried once (higher target acceptance, longer tuning) and otherwise flagged."
        )
    ]
    t = Table(
        [
            "Outcome",
            "Model",
            "Reliable",
            "Retried",
            "Max R-hat",
            "Min ESS bulk",
            "Min ESS tail",
            "Divergences",
            "Min E-BFMI",
            "Problems",
        ],
        [],
        numeric={4, 5, 6, 7, 8},
    )
    for outcome in ctx.outcomes:
        for model in ctx.models(outcome):
            fit = ctx.json(outcome, model, "fit.json") or {}
            diag = ctx.csv(outcome, model, "diagnostics.csv")
            rh = diag["r_hat"].max() if diag is not None and "r_hat" in diag else np.nan
            eb = diag["ess_bulk"].min() if diag is not None and "ess_bulk" in diag else np.nan
            et = diag["ess_tail"].min() if diag is not None and "ess_tail" in diag else np.nan
            ebfmi = fit.get("ebfmi")
            rel = fit.get("reliable")
            t.rows.append(
                [
                    ctx.label(outcome),
                    model,
                    "yes" if rel else ("NO" if rel is False else "unknown"),
                    "yes" if fit.get("retried") else ("no" if fit else DASH),
                    num(rh, 3),
                    DASH if is_missing(eb) else f"{eb:.0f}",
                    DASH if is_missing(et) else f"{et:.0f}",
                    str(fit.get("divergences", DASH)),
                    num(min(ebfmi), 2) if isinstance(ebfmi, list) and ebfmi else DASH,
                    "; ".join(map(str, fit.get("problems") or [])) or ("none" if fit else "fit.json missing"),
                ]
            )
            t.row_classes.append("bad" if rel is False or not fit else "")
    blocks.append(TAB(t))
    for outcome in ctx.outcomes:
        fam, model = ctx.family(outcome), ctx.primary(outcome)
        blocks.append(H3(ctx.label(outcome), f"checks-{_slug(outcome)}"))
        ppc = ctx.csv(outcome, model, "ppc.csv")
        if ppc is not None and not ppc.empty and {"observed_mean", "predicted_mean"} <= set(ppc):
            one_per_cp = not ppc.duplicated(["cluster", "period"]).any()
            agg = []
            for (c, p_), g in ppc.groupby(["cluster", "period"]):
                agg.append(
                    {
                        "cluster": c,
                        "period": p_,
                        "treated": int(g["treated"].max()),
                        "observed": _wmean(g["observed_mean"], g["n"]),
                        "predicted": _wmean(g["predicted_mean"], g["n"]),
                        "lower": g["lower"].iloc[0] if one_per_cp else np.nan,
                        "upper": g["upper"].iloc[0] if one_per_cp else np.nan,
                    }
                )
            agg = pd.DataFrame(agg)
            scale = " (standardised scale)" if fam in ("gaussian", "lognormal") else ""
            xl = {"bernoulli": "proportion", "binomial": "proportion"}.get(fam, "mean per patient") + scale
            cover = ppc["inside"].mean() if "inside" in ppc else np.nan
            pp = (ctx.json(outcome, model, "fit.json") or {}).get("ppc", {})
            txt = f"Cells inside their predictive interval: {percent(cover)}" if not is_missing(cover) else ""
            if pp:
                txt += f"; Bayesian p-values: χ² {num(pp.get('p_chi2'), 2)}, SD of cell means {num(pp.get('p_sd'), 2)} (near 0 or 1 flags misfit)"
            uri = figures.ppc(agg, xl, with_intervals=one_per_cp)
            blocks.append(
                FIG(
                    uri,
                    f"Posterior predictive check, model {model}: observed vs predicted mean per cluster-period"
                    + (
                        " with predictive intervals"
                        if one_per_cp
                        else " (cells aggregated; intervals are per cell, see coverage)"
                    )
                    + (f". {txt}." if txt else "."),
                    "Posterior predictive check",
                )
            )
        else:
            blocks.append(NOTE(f"No posterior predictive check (ppc.csv) for model {escape(model)}."))
        loo = ctx.csv(outcome, "loo.csv")
        if loo is None or loo.empty:
            n_models = len(ctx.models(outcome))
            blocks.append(
                NOTE(
                    "One model variant only: no LOO comparison."
                    if n_models < 2
                    else "No LOO comparison (loo.csv missing)."
                )
            )
        else:
            keep = [
                c
                for c in (
                    "model",
                    "rank",
                    "elpd",
                    "se",
                    "p",
                    "elpd_diff",
                    "dse",
                    "weight",
                    "n_pareto_k_bad",
                    "max_pareto_k",
                )
                if c in loo
            ]
            lt = Table(
                [
                    {
                        "n_pareto_k_bad": f"cells k > {PARETO_K_BAD:g}",
                        "elpd_diff": "Δ elpd",
                        "dse": "SE of Δ",
                        "p": "p_loo",
                        "max_pareto_k": "max k",
                    }.get(c, c)
                    for c in keep
                ],
                [],
                numeric=set(range(1, len(keep))),
                caption="PSIS-LOO comparison (higher elpd is better; Δ relative to the best).",
            )
            for _, r in loo.iterrows():
                row = []
                for c in keep:
                    v = r[c]
                    if c == "n_pareto_k_bad":
                        row.append(
                            count(v, ctx.below)
                            if not is_missing(v) and v == 0
                            else str(int(v))
                            if not is_missing(v)
                            else DASH
                        )
                    elif c == "model":
                        row.append(str(v))
                    elif c == "rank":
                        row.append(str(int(v)))
                    else:
                        row.append(num(v, 2))
                lt.rows.append(row)
                lt.row_classes.append("bad" if r["n_pareto_k_bad"] > 0 else "")
            blocks.append(TAB(lt))
    return Section("model-checks", "Model checks", blocks)


PRIOR_TEXT = [
    ("intercept_sd", "μ (intercept)", "Normal(μ₀, {v}), μ₀ the empirical link-scale mean"),
    (
        "trend_sd",
        "secular trend f(t)",
        "Normal(0, {v}) (sum-to-zero for period effects; random-walk SD half-normal)",
    ),
    ("effect_sd", "θ (treatment effect)", "Normal(0, {v})"),
    ("interaction_sd", "γ (alignment, fidelity interactions)", "Normal(0, {v})"),
    ("beta_sd", "β (standardised covariates)", "Normal(0, {v})"),
    ("sd_site", "σ_site", "Half-normal({v})"),
    ("sd_cluster", "σ_cluster", "Half-normal({v})"),
    ("sd_cluster_period", "σ_cluster-period", "Half-normal({v})"),
    ("sd_treatment", "σ_δ (cluster-specific effects)", "Half-normal({v})"),
    ("sigma", "σ (residual, gaussian/lognormal)", "Half-normal({v})"),
    ("phi_rate", "φ (negative-binomial shape)", "Exponential(rate {v})"),
]


def _equation(spec, alignment_on: bool) -> str:
    lhs = {"logit": "logit P(y<sub>ijt</sub> = 1)", "log": "log E[y<sub>ijt</sub>]"}.get(
        spec.link, "E[y<sub>ijt</sub>]"
    )
    if spec.family == "lognormal":
        lhs = "E[log y<sub>ijt</sub>]"
    if spec.family in ("poisson", "negative_binomial"):
        lhs = "log E[y<sub>jt</sub>] − log exposure<sub>jt</sub>"
    aligned = alignment_on and "alignment" in spec.moderators
    mod = "θ" + (" + γ A<sub>j</sub>" if aligned else "")
    mod += " + φ<sub>F</sub> F<sub>jt</sub>" if "fidelity" in spec.moderators else ""
    mod += " + δ<sub>j</sub>" if spec.random_treatment else ""
    if spec.exposure == "eti":
        mod = mod.replace("θ", "θ<sub>e</sub>", 1)
    rhs = "μ + f(t)"
    if spec.covariates:
        rhs += " + Z<sub>ijt</sub>β"
    if aligned:
        rhs += " + α A<sub>j</sub>"
    h = "" if spec.exposure in ("step", "eti") else " h(e<sub>jt</sub>)"
    rhs += f" + X<sub>jt</sub>{h} ({mod})"
    if spec.site_effect:
        rhs += " + u<sub>k</sub>"
    rhs += " + v<sub>j</sub>"
    if spec.cluster_period != "none":
        rhs += " + w<sub>jt</sub>"
    return f"{lhs} = {rhs}"


def _overdispersion_words(spec: ModelSpec) -> str:
    if spec.family != "negative_binomial":
        return ""
    if spec.overdispersion == "cell":
        return "Overdispersion at the cell: each cluster-period count is negative binomial with shape φ (counts recorded per cluster-period)."
    return "Overdispersion per patient: a cell's count is a sum of n per-patient negative-binomial counts, shape n φ."


def methods(ctx: Context) -> Section:
    blocks = []
    al_on = ctx.cfg.get("alignment", {}).get("source", "none") != "none"
    trend_words = {
        "period": "categorical period effects (one per period, Hussey & Hughes)",
        "linear": "a linear trend in period",
        "spline": "a B-spline in period with {df} degrees of freedom",
        "rw1": "a smooth first-order random walk over periods",
    }
    seen = set()
    for outcome in ctx.outcomes:
        for m in models_for(ctx.cfg, outcome):
            fam = ctx.family(outcome)
            prep = ctx.json(outcome, "prepared.json") or {}
            trial_cfg = {**ctx.cfg, "covariates": prep.get("covariates", ctx.cfg.get("covariates", []))}
            spec = ModelSpec.from_config(
                m, outcome, ctx.cfg["outcomes"][outcome], trial_cfg, table=prep.get("table")
            )
            key = (m["id"], fam, tuple(spec.covariates), spec.cluster_period, spec.overdispersion)
            if key in seen:
                continue
            seen.add(key)
            outs = [o for o in ctx.outcomes if ctx.family(o) == fam and m["id"] in ctx.models(o)]
            blocks.append(
                H3(
                    f"Model {m['id']}: {fam} outcomes ({', '.join(ctx.label(o) for o in outs)})",
                    f"methods-{_slug(m['id'])}-{_slug(fam)}",
                )
            )
            if m.get("label"):
                blocks.append(P(f"<em>{escape(m['label'])}</em>"))
            blocks.append({"kind": "equation", "html": Markup(_equation(spec, al_on))})
            words = [
                f"Family <strong>{escape(fam)}</strong> with {escape(spec.link)} link"
                + (" on log y" if fam == "lognormal" else "")
                + ("; exposure enters as a log offset" if fam in ("poisson", "negative_binomial") else "")
                + ". Likelihood on cluster-period cells (sufficient statistics).",
                f"Secular trend f(t): {escape(trend_words[spec.trend].format(df=spec.spline_df))}.",
                "X<sub>jt</sub> = 1 when cluster j is under the intervention in period t; "
                + {
                    "step": "the effect is an immediate step.",
                    "ramp": f"h(e) = min(e / {spec.ramp_periods}, 1), a linear ramp over exposure time e.",
                    "eti": "one effect θ<sub>e</sub> per exposure time e (exposure-time indicators); θ is their unweighted mean.",
                }[spec.exposure],
                (
                    "A<sub>j</sub>: alignment of cluster j, standardised over clusters (mean 0, SD 1); α the difference in the outcome without the intervention per SD (so a baseline difference that tracks alignment is not read as moderation), γ the change in effect per SD."
                    if al_on and "alignment" in spec.moderators
                    else "No alignment moderator."
                ),
                (
                    "δ<sub>j</sub> ~ N(0, σ<sub>δ</sub>²): cluster-specific effect heterogeneity. "
                    if spec.random_treatment
                    else ""
                )
                + (
                    "u<sub>k</sub> ~ N(0, σ<sub>site</sub>²) site intercepts (fitted with at least three sites; with fewer, the cluster intercepts absorb site differences); "
                    if spec.site_effect
                    else ""
                )
                + "v<sub>j</sub> ~ N(0, σ<sub>cluster</sub>²) cluster intercepts"
                + {
                    "none": ".",
                    "exchangeable": "; w<sub>jt</sub> ~ N(0, σ<sub>cp</sub>²) exchangeable cluster-period effects.",
                    "ar1": "; w<sub>jt</sub> AR(1) within cluster (correlation ρ ~ Beta(2, 2)), stationary SD σ<sub>cp</sub>.",
                }[spec.cluster_period],
                _overdispersion_words(spec),
                "Covariates (standardised): "
                + (escape(", ".join(spec.covariates)) if spec.covariates else "none")
                + ".",
            ]
            blocks.append({"kind": "list", "items": [Markup(w) for w in words if w]})
            pt = Table(
                ["Parameter", "Prior"],
                [],
                caption="Priors (link scale; gaussian/lognormal outcomes standardised).",
            )
            for k, name, form in PRIOR_TEXT:
                if k == "sigma" and fam not in ("gaussian", "lognormal"):
                    continue
                if k == "phi_rate" and fam != "negative_binomial":
                    continue
                if k == "sd_treatment" and not spec.random_treatment:
                    continue
                if k == "sd_cluster_period" and spec.cluster_period == "none":
                    continue
                pt.rows.append([name, form.format(v=f"{spec.priors[k]:g}")])
            blocks.append(TAB(pt))
            s = spec.sampler
            blocks.append(
                P(
                    f"Sampler: {escape(str(s.get('engine')))} NUTS, {s.get('chains')} chains × {s.get('draws')} draws after "
                    f"{s.get('tune')} tuning steps, target acceptance {s.get('target_accept')}. Intervals: "
                    f"{escape(interval_label(_interval_code(ctx.cfg)))} ({'equal-tailed' if ctx.cfg.get('interval', {}).get('kind', 'eti') == 'eti' else 'highest density'})."
                )
            )
    blocks.append(
        P(
            "Frequentist cross-checks at the level the data were recorded (patients as rows; cluster-period "
            "summaries as cells, analysed as the means of their patients): GEE with exchangeable and "
            "nested-exchangeable working correlation and small-sample corrected sandwich standard errors "
            "(Kauermann-Carroll, Mancl-DeRouen, Fay-Graubard; t on clusters − p df), a cluster-robust GLM, and "
            "for gaussian and lognormal outcomes a linear mixed model (REML)."
        )
    )
    return Section("methods", "Methods", blocks)


def planning(ctx: Context) -> Section:
    """Analytic power of the trial's own schedule (power.csv), for planning the next trial."""
    from qialign.power import power

    table = ctx.csv("power.csv")
    title = "Power and planning"
    if table is None or table.empty:
        return Section(
            "planning", title, [NOTE("No analytic power table (no binary or continuous outcome).")]
        )
    outcome = str(table["outcome"].iloc[0])
    scale = "risk difference" if ctx.family(outcome) in ("bernoulli", "binomial") else "mean difference"
    alpha, target = float(table["alpha"].iloc[0]), float(table["target"].iloc[0])
    blocks = [
        P(
            f"Power of this trial's own schedule of clusters, periods and patients per cluster-period (outcome "
            f"<strong>{escape(ctx.label(outcome))}</strong>, {scale}), and of the schedule repeated, by "
            "generalised least squares on cluster-period means with categorical period effects (Hussey & Hughes "
            "2007; block-exchangeable correlation with within-period ICC and cluster autocorrelation CAC, "
            f"Hooper et al. 2016). Two-sided level {alpha:g}; MDE is the smallest effect detected with "
            f"power {target:g}. The interaction is per SD of alignment, alignment balanced within sequences. "
            "The GLS engine reproduces the SteppedPower vignette's published values (tests)."
        )
    ]
    t = Table(
        ["Design", "Clusters", "ICC", "CAC", "Estimand", "SE", "MDE", "Effect", "Power"],
        [],
        numeric={1, 2, 3, 5, 6, 7, 8},
    )
    for r in table.to_dict("records"):
        t.rows.append(
            [
                str(r["design"]),
                str(int(r["clusters"])),
                num(r["icc"], 3),
                num(r["cac"], 2),
                str(r["estimand"]),
                num(r["se"], 4),
                num(r["mde"], 4),
                DASH if is_missing(r["effect"]) else num(r["effect"], 4),
                DASH if is_missing(r["power"]) else num(r["power"], 3),
            ]
        )
    tr = table[table["estimand"] == "treatment"].drop_duplicates(["design", "icc", "cac"])
    grid = np.linspace(0, 1.5 * tr["mde"].max(), 60)
    curves = pd.DataFrame(
        [
            {
                "design": r["design"],
                "icc": r["icc"],
                "cac": r["cac"],
                "effect": e,
                "power": power(e, r["se"], alpha),
            }
            for r in tr.to_dict("records")
            for e in grid
        ]
    )
    blocks.append(
        FIG(
            figures.power_curves(curves, f"treatment effect ({scale})"),
            "Power of the treatment effect against its size, per design (the trial's schedule and "
            "its repeats); colour: ICC, solid: CAC 1, dashed: CAC below 1; dotted: 0.8.",
            "Power curves",
        )
    )
    blocks.append(TAB(t))
    return Section("planning", title, blocks)


def _interval_code(cfg: dict) -> str:
    iv = cfg.get("interval", {})
    return f"{iv.get('kind', 'eti')}{100 * float(iv.get('prob', 0.95)):g}"


def provenance(ctx: Context) -> Section:
    from qialign import provenance as prov

    blocks = []
    data = ctx.json("data.json") or {}
    files = data.get("files") or {}
    if not files:
        for o in ctx.outcomes:
            files = (ctx.json(o, "prepared.json") or {}).get("files") or {}
            if files:
                break
    ft = Table(["Table", "Path", "Rows", "SHA-256"], [], numeric={2}, caption="Data files as read.")
    for name, f in files.items():
        ft.rows.append(
            [name, str(f.get("path", DASH)), count(f.get("rows"), ctx.below), str(f.get("sha256", DASH))]
        )
    blocks.append(TAB(ft) if files else NOTE("No data file record (data.json missing).", "bad"))
    st = Table(
        ["Outcome", "Model", "Seed", "Engine", "Chains × draws", "Compile (s)", "Sampling (s)"],
        [],
        numeric={2, 5, 6},
    )
    versions, commit = None, None
    for outcome in ctx.outcomes:
        for model in ctx.models(outcome):
            fit = ctx.json(outcome, model, "fit.json")
            if fit is None:
                continue
            s, tm = fit.get("sampler") or {}, fit.get("timings") or {}
            st.rows.append(
                [
                    ctx.label(outcome),
                    model,
                    str(fit.get("seed", DASH)),
                    str(s.get("engine", DASH)),
                    f"{s.get('chains', DASH)} × {s.get('draws', DASH)}",
                    num(tm.get("compile_s"), 1),
                    num(tm.get("sample_s"), 1),
                ]
            )
            versions = versions or fit.get("versions")
            commit = commit or fit.get("git_commit")
    blocks.append(
        P(
            f"Master seed: <strong>{escape(str(ctx.cfg.get('seed')))}</strong> (every fit derives its seed from it)."
        )
    )
    if st.rows:
        blocks.append(TAB(st))
    src = "fit records" if versions else "this report's environment"
    versions = versions or prov.package_versions()
    commit = commit or prov.git_commit(ctx.config_path.resolve().parent)
    blocks.append(P(f"Git commit: <code>{escape(commit)}</code>. Package versions ({src}):"))
    blocks.append(TAB(Table(["Package", "Version"], [[k, str(v)] for k, v in versions.items()])))
    text = ctx.config_path.read_text() if ctx.config_path.is_file() else "(config file not found)"
    blocks.append(P(f"Trial configuration: <code>{escape(str(ctx.config_path))}</code>"))
    blocks.append({"kind": "pre", "text": text})
    return Section("provenance", "Provenance", blocks)


def logs(ctx: Context) -> Section:
    if not ctx.logs:
        return Section("logs", "Logs", [NOTE("No step logs were given to the report.")])
    items = []
    for p in ctx.logs:
        p = Path(p)
        status = "" if p.is_file() else " (missing)"
        items.append(Markup(f"<a href='{escape(_rel(ctx, p))}'>{escape(p.name)}</a>{escape(status)}"))
    return Section(
        "logs",
        "Logs",
        [P("Each workflow step's log (links relative to this page):"), {"kind": "list", "items": items}],
    )


SECTIONS = [
    summary,
    design,
    data_flow,
    time_trends,
    effects,
    alignment,
    model_checks,
    planning,
    methods,
    provenance,
    logs,
]
SECTION_IDS = [
    "attention",
    "summary",
    "design",
    "data-flow",
    "time-trends",
    "effects",
    "alignment",
    "model-checks",
    "planning",
    "methods",
    "provenance",
    "logs",
]
