# ruff: noqa: E501  (report prose: long human-readable strings are kept whole for grep-ability)
"""The methods section, generated from what was fitted and the design that was analysed.

Per model: the spec (:meth:`ModelSpec.from_config`, with the covariates and table ``prepared.json``
recorded), narrowed to the terms the fit actually contained (:func:`fitted_terms`: the parameters
its ``diagnostics.csv`` lists, e.g. no cluster intercepts for one series, no site intercepts with
fewer than three sites). The cross-check paragraph names only the methods ``crosscheck.csv`` holds.
"""

from __future__ import annotations

from dataclasses import dataclass

from markupsafe import Markup, escape

from qialign.families import FAMILIES
from qialign.methods import CONDITIONAL, METHODS, POPULATION_AVERAGED, Method
from qialign.models.marginal import QUADRATURE_NODES
from qialign.models.spec import ModelSpec
from qialign.report import estimates as E
from qialign.report.blocks import H3, LIST, TAB, P, Section, plural, slug
from qialign.report.context import Context
from qialign.report.tables import Table, interval_label
from qialign.results import FIT_FILES

TREND_WORDS = {
    "period": "categorical period effects (one per period, Hussey & Hughes)",
    "linear": "a linear trend in period",
    "spline": "a B-spline in period with {df} degrees of freedom",
    "rw1": "a smooth first-order random walk over periods",
}
EXPOSURE_WORDS = {
    "step": "the effect is an immediate step.",
    "ramp": "h(e) = min(e / {ramp}, 1), a linear ramp over exposure time e.",
    "eti": "one effect θ<sub>e</sub> per exposure time e (exposure-time indicators); θ is their unweighted mean.",
}


@dataclass(frozen=True)
class Fitted:
    """The terms one fit contained."""

    site: bool
    cluster: bool
    cluster_period: str  # none, exchangeable, ar1
    harmonics: int
    slope_change: bool
    random_treatment: bool
    alignment: bool
    fidelity: bool
    from_fit: bool  # read from the fit's parameters (else the spec as planned: no fit yet)


def parameter_names(ctx: Context, outcome: str, model: str) -> set[str] | None:
    """The fitted parameters (``diagnostics.csv``, indices dropped: ``b_season[sin1]`` ->
    ``b_season`` once per index), or None when the fit wrote no diagnostics."""
    diag = ctx.csv(outcome, model, FIT_FILES["diagnostics"])
    if diag is None or diag.empty:
        return None
    return set(diag[diag.columns[0]].astype(str))


def fitted_terms(spec: ModelSpec, params: set[str] | None, n_clusters: int, alignment_on: bool) -> Fitted:
    """The spec's terms, each kept only if the fit estimated its parameter (when that is known)."""

    def has(name: str, wanted: bool = True) -> bool:
        return wanted and (params is None or any(p == name or p.startswith(f"{name}[") for p in params))

    season = sum(p.startswith("b_season[") for p in params) // 2 if params is not None else spec.harmonics
    cp = spec.cluster_period if has("sd_cluster_period", spec.cluster_period != "none") else "none"
    return Fitted(
        site=has("sd_site", spec.site_effect),
        cluster=has("sd_cluster", n_clusters != 1),
        cluster_period=cp,
        harmonics=min(season, spec.harmonics),
        slope_change=has("slope_change", spec.slope_change),
        random_treatment=has("sd_treatment", spec.random_treatment),
        alignment=has("alignment_interaction", alignment_on and "alignment" in spec.moderators),
        fidelity=has("fidelity_interaction", "fidelity" in spec.moderators),
        from_fit=params is not None,
    )


def equation(spec: ModelSpec, f: Fitted) -> str:
    """The linear predictor as fitted, in HTML."""
    lhs = {"logit": "logit P(y<sub>ijt</sub> = 1)", "log": "log E[y<sub>ijt</sub>]"}.get(
        spec.link, "E[y<sub>ijt</sub>]"
    )
    if spec.family == "lognormal":
        lhs = "E[log y<sub>ijt</sub>]"
    if FAMILIES[spec.family].kind == "count":
        lhs = "log E[y<sub>jt</sub>] − log exposure<sub>jt</sub>"
    mod = "θ" + (" + γ A<sub>j</sub>" if f.alignment else "")
    mod += " + φ<sub>F</sub> F<sub>jt</sub>" if f.fidelity else ""
    mod += " + δ<sub>j</sub>" if f.random_treatment else ""
    if spec.exposure == "eti":
        mod = mod.replace("θ", "θ<sub>e</sub>", 1)
    rhs = "μ + f(t)" + (" + s(t)" if f.harmonics else "")
    if spec.covariates:
        rhs += " + Z<sub>ijt</sub>β"
    if f.alignment and spec.moderator_main_effects:
        rhs += " + α A<sub>j</sub>"
    h = "" if spec.exposure in ("step", "eti") else " h(e<sub>jt</sub>)"
    rhs += f" + X<sub>jt</sub>{h} ({mod})"
    if f.slope_change:
        rhs += " + κ X<sub>jt</sub> (t − t<sub>0j</sub>)"
    rhs += " + u<sub>k</sub>" if f.site else ""
    rhs += " + v<sub>j</sub>" if f.cluster else ""
    rhs += " + w<sub>jt</sub>" if f.cluster_period != "none" else ""
    return f"{lhs} = {rhs}"


def _random_effect_words(f: Fitted) -> str:
    parts = []
    if f.random_treatment:
        parts.append("δ<sub>j</sub> ~ N(0, σ<sub>δ</sub>²): cluster-specific effect heterogeneity")
    if f.site:
        planned = "" if f.from_fit else " (fitted with at least three sites)"
        parts.append(f"u<sub>k</sub> ~ N(0, σ<sub>site</sub>²) site intercepts{planned}")
    if f.cluster:
        parts.append("v<sub>j</sub> ~ N(0, σ<sub>cluster</sub>²) cluster intercepts")
    if f.cluster_period == "exchangeable":
        parts.append("w<sub>jt</sub> ~ N(0, σ<sub>cp</sub>²) exchangeable cluster-period effects")
    elif f.cluster_period == "ar1":
        within = " within cluster" if f.cluster else ""
        parts.append(
            f"w<sub>jt</sub> AR(1) residuals{within} (correlation ρ ~ Beta(2, 2)), stationary SD σ<sub>cp</sub>"
        )
    return "; ".join(parts) + "." if parts else ""


def _overdispersion_words(spec: ModelSpec) -> str:
    if spec.family != "negative_binomial":
        return ""
    if spec.overdispersion == "cell":
        return "Overdispersion at the cell: each cluster-period count is negative binomial with shape φ (counts recorded per cluster-period)."
    return "Overdispersion per patient: a cell's count is a sum of n per-patient negative-binomial counts, shape n φ."


def model_words(spec: ModelSpec, f: Fitted) -> list[str]:
    """The model's terms in words (HTML), one item each."""
    fam = spec.family
    words = [
        f"Family <strong>{escape(fam)}</strong> with {escape(spec.link)} link"
        + (" on log y" if fam == "lognormal" else "")
        + ("; exposure enters as a log offset" if FAMILIES[fam].kind == "count" else "")
        + ". Likelihood on cluster-period cells (sufficient statistics).",
        f"Secular trend f(t): {escape(TREND_WORDS[spec.trend].format(df=spec.spline_df))}.",
    ]
    if f.harmonics:
        words.append(
            f"Seasonality s(t): {plural(f.harmonics, 'harmonic')} (sine and cosine pairs) of a "
            f"{spec.season_length}-period cycle."
        )
    words.append(
        "X<sub>jt</sub> = 1 when cluster j is under the intervention in period t; "
        + EXPOSURE_WORDS[spec.exposure].format(ramp=spec.ramp_periods)
    )
    if f.slope_change:
        words.append("κ: change in slope after the intervention starts (t<sub>0j</sub> its first period).")
    words.append(
        "A<sub>j</sub>: alignment of cluster j, standardised over clusters (mean 0, SD 1); α the difference in the outcome without the intervention per SD (so a baseline difference that tracks alignment is not read as moderation), γ the change in effect per SD."
        if f.alignment
        else "No alignment moderator."
    )
    words += [
        _random_effect_words(f),
        _overdispersion_words(spec),
        "Covariates (standardised): "
        + (escape(", ".join(spec.covariates)) if spec.covariates else "none")
        + ".",
    ]
    return [w for w in words if w]


#: (prior key, parameter, form, whether the fit has it)
PRIOR_TEXT = [
    ("intercept_sd", "μ (intercept)", "Normal(μ₀, {v}), μ₀ the empirical link-scale mean", lambda s, f: True),
    (
        "trend_sd",
        "secular trend f(t)",
        "Normal(0, {v}) (sum-to-zero for period effects; random-walk SD half-normal)",
        lambda s, f: True,
    ),
    ("trend_sd", "seasonal harmonics s(t)", "Normal(0, {v})", lambda s, f: f.harmonics > 0),
    ("effect_sd", "θ (treatment effect)", "Normal(0, {v})", lambda s, f: True),
    ("effect_sd", "κ (slope change)", "Normal(0, {v})", lambda s, f: f.slope_change),
    (
        "exposure_sd",
        "θ_e − θ (exposure-time deviations, sum to zero)",
        "sum-to-zero Normal(0, {v})",
        lambda s, f: s.exposure == "eti",
    ),
    (
        "interaction_sd",
        "γ (alignment, fidelity interactions)",
        "Normal(0, {v})",
        lambda s, f: f.alignment or f.fidelity,
    ),
    (
        "beta_sd",
        "β (standardised covariates)",
        "Normal(0, {v})",
        lambda s, f: bool(s.covariates) or f.alignment,
    ),
    ("sd_site", "σ_site", "Half-normal({v})", lambda s, f: f.site),
    ("sd_cluster", "σ_cluster", "Half-normal({v})", lambda s, f: f.cluster),
    ("sd_cluster_period", "σ_cluster-period", "Half-normal({v})", lambda s, f: f.cluster_period != "none"),
    ("sd_treatment", "σ_δ (cluster-specific effects)", "Half-normal({v})", lambda s, f: f.random_treatment),
    (
        "sigma",
        "σ (residual, gaussian/lognormal)",
        "Half-normal({v})",
        lambda s, f: FAMILIES[s.family].kind == "continuous",
    ),
    (
        "phi_rate",
        "φ (negative-binomial shape)",
        "Exponential(rate {v})",
        lambda s, f: s.family == "negative_binomial",
    ),
]


def priors_table(spec: ModelSpec, f: Fitted) -> Table:
    t = Table(
        ["Parameter", "Prior"], [], caption="Priors (link scale; gaussian/lognormal outcomes standardised)."
    )
    for key, name, form, fitted in PRIOR_TEXT:
        if fitted(spec, f):
            t.rows.append([name, form.format(v=f"{spec.priors[key]:g}")])
    return t


def _n_clusters(ctx: Context) -> int:
    """The trial's clusters (data.json), 0 before validation has written it."""
    return len((ctx.json("data.json") or {}).get("clusters") or [])


def methods(ctx: Context) -> Section:
    blocks = [P(design_text(ctx))]
    n_clusters = _n_clusters(ctx)
    seen = set()
    for outcome in ctx.outcomes:
        for model in ctx.models(outcome):
            spec = ctx.spec(outcome, model)
            f = fitted_terms(spec, parameter_names(ctx, outcome, model), n_clusters, ctx.alignment_on)
            key = (model, spec.family, tuple(spec.covariates), spec.overdispersion, f)
            if key in seen:
                continue
            seen.add(key)
            blocks += _model_blocks(ctx, spec, f)
    blocks.append(P(crosscheck_text(ctx)))
    blocks.append(P(estimand_text(ctx)))
    return Section("methods", "Methods", blocks)


def _model_blocks(ctx: Context, spec: ModelSpec, f: Fitted) -> list[dict]:
    """Heading, label, equation, terms, priors and sampler of one fitted model."""
    fam = spec.family
    outs = [o for o in ctx.outcomes if ctx.family(o) == fam and spec.id in ctx.models(o)]
    blocks = [
        H3(
            f"Model {spec.id}: {fam} outcomes ({', '.join(ctx.label(o) for o in outs)})",
            f"methods-{slug(spec.id)}-{slug(fam)}",
        )
    ]
    if spec.label:
        blocks.append(P(f"<em>{escape(spec.label)}</em>"))
    blocks.append({"kind": "equation", "html": Markup(equation(spec, f))})
    blocks.append(LIST(model_words(spec, f)))
    blocks.append(TAB(priors_table(spec, f)))
    s = spec.sampler
    kind = "equal-tailed" if ctx.interval["kind"] == "eti" else "highest density"
    blocks.append(
        P(
            f"Sampler: {escape(str(s.get('engine')))} NUTS, {s.get('chains')} chains × {s.get('draws')} draws after "
            f"{s.get('tune')} tuning steps, target acceptance {s.get('target_accept')}. Intervals: "
            f"{escape(interval_label(ctx.interval_code))} ({kind})."
        )
    )
    return blocks


def design_text(ctx: Context) -> str:
    """The design as analysed: clusters, periods and where the comparison comes from."""
    data = ctx.json("data.json") or {}
    clusters, periods = data.get("clusters") or [], data.get("periods") or []
    never = sum(c.get("start_period") is None for c in clusters)
    size = f"{plural(len(clusters), 'cluster')}, {plural(len(periods), 'period')}"
    if ctx.design == "interrupted_time_series":
        starts = sorted({c["start_period"] for c in clusters if c.get("start_period") is not None})
        when = f" from period {starts[0]}" if len(starts) == 1 else ""
        return (
            f"Design analysed: <strong>interrupted time series</strong> ({size}; intervention{when}). "
            "No concurrent controls: the secular trend is estimated from the periods before the intervention."
        )
    if ctx.design == "controlled_before_after":
        return (
            f"Design analysed: <strong>controlled before-after</strong> ({size}; {never} control "
            f"cluster{'s' if never != 1 else ''} never start): the controls carry the secular trend."
        )
    return (
        f"Design analysed: <strong>stepped wedge</strong> ({size}): clusters cross over to the intervention "
        "at staggered times, so the clusters still in control carry the secular trend."
    )


def _methods_present(ctx: Context) -> list[str]:
    seen: list[str] = []
    for outcome in ctx.outcomes:
        cc = ctx.crosscheck(outcome)
        if cc is not None and not cc.empty and "method" in cc:
            seen += [str(m) for m in cc["method"].unique() if str(m) not in seen]
    return seen


def crosscheck_text(ctx: Context) -> str:
    """One paragraph naming the cross-checks that were run (``crosscheck.csv``), nothing else."""
    methods = _methods_present(ctx)
    if not methods:
        return "No frequentist cross-check was run."
    parts = []
    gee = [p for p in map(E.gee_parts, methods) if p is not None]
    if gee:
        corrs = " and ".join(dict.fromkeys(c.replace("_", "-") for c, _ in gee))
        ses = ", ".join(dict.fromkeys(E.SE_KINDS.get(k, k).removesuffix(" SE") for _, k in gee))
        parts.append(
            f"GEE with {corrs} working correlation and sandwich standard errors ({ses}; t on clusters − p df)"
        )
    if "glm_cluster_robust" in methods:
        parts.append("a cluster-robust GLM")
    if "mixedlm" in methods:
        parts.append("a linear mixed model (REML; t on clusters − p df)")
    its = [m for m in methods if E.segmented_parts(m) is not None]
    if its:
        parts.append(_segmented_text(ctx, its))
    level = (
        " at the level the data were recorded (patients as rows; cluster-period summaries as cells, "
        "analysed as the means of their patients)"
        if gee or "glm_cluster_robust" in methods or "mixedlm" in methods
        else ""
    )
    return f"Frequentist cross-checks{level}: " + "; ".join(parts) + "."


def _integrated_effects(ctx: Context) -> str:
    """The random effects the primary fit of the first outcome has (the ones the population-averaged
    effects integrate over), in words."""
    outcome = ctx.outcomes[0]
    model = ctx.primary(outcome)
    f = fitted_terms(
        ctx.spec(outcome, model), parameter_names(ctx, outcome, model), _n_clusters(ctx), ctx.alignment_on
    )
    names = [n for n, on in (("site", f.site), ("cluster", f.cluster), ("cluster-period", f.cluster_period != "none"),
                             ("random treatment", f.random_treatment)) if on]  # fmt: skip
    if not names:
        return "none: the fit has no random effects"
    return f"over the {_listed(names)} effects"


def estimand_text(ctx: Context) -> str:
    """What the effect rows are: conditional or population-averaged, in-sample or for a new
    cluster (``conditioning`` / ``population`` of estimates.csv), and which rows are comparable."""
    text = (
        "Estimands. θ, its natural-scale version, γ and the effects at low and high alignment are "
        "conditional (cluster-specific) effects: the change for a cluster given its cluster and "
        "cluster-period effects. The average absolute effect (marginal_difference) is conditional and "
        "in-sample: it averages over every analysed cell, pre-periods included, given the fitted effects. "
        "The population-averaged effects for a new cluster (pa_difference, pa_ratio, pa_odds_ratio) "
        "integrate, in every posterior draw, a new cluster's expected outcome with and without the "
        "intervention over its random effects (for a logit link by Gauss-Hermite quadrature, "
        f"{QUADRATURE_NODES} nodes; in closed form for log and identity links; "
        f"{_integrated_effects(ctx)}) at the trial's period mix and mean "
        "alignment, then contrast the two."
    )
    methods = _methods_present(ctx)
    if not methods:
        return text
    fitted = [METHODS[m] for m in methods if m in METHODS and METHODS[m].se != "none"]
    said = []
    for conditioning in (POPULATION_AVERAGED, CONDITIONAL):  # the registry's words
        kinds = list(dict.fromkeys(_kind(m) for m in fitted if m.conditioning == conditioning))
        if kinds:
            said.append(f"{_listed(kinds)} estimate{'s' if len(kinds) == 1 else ''} {conditioning} effects")
    said.append(
        "the report sets a frequentist row beside a Bayesian one only when both estimate the same "
        "quantity (on a logit or log link, the frequentist odds or rate ratio beside the "
        "population-averaged one; on an identity link the two coincide)."
    )
    kinds_said = "; ".join(said)
    return f"{text} {kinds_said[:1].upper()}{kinds_said[1:]}"


def _kind(m: Method) -> str:
    """A cross-check's kind in words: GEE, segmented regression, the label otherwise."""
    if m.correlation:
        return "GEE"
    if m.regression:
        return "segmented regression"
    return {"glm_cluster_robust": "the cluster-robust GLM", "mixedlm": "the linear mixed model"}.get(
        m.id, m.label
    )


def _listed(names: list[str]) -> str:
    """a, b and c."""
    return ", ".join(names[:-1]) + " and " + names[-1] if len(names) > 1 else names[0]


def _segmented_text(ctx: Context, its: list[str]) -> str:
    """Segmented regression of the series, with the primary model's seasonality and slope change."""
    outcome = ctx.outcomes[0]
    spec = ctx.spec(outcome, ctx.crosscheck_model)
    fam = " and ".join(dict.fromkeys("quasi-Poisson" if "quasipoisson" in m else "OLS" for m in its))
    se = " and ".join(dict.fromkeys("Newey-West" if m.endswith("newey_west") else "model-based" for m in its))
    extra = (
        [f"{plural(spec.harmonics, 'harmonic')} of a {spec.season_length}-period cycle"]
        if spec.harmonics
        else []
    )
    extra += ["a change in slope"] if spec.slope_change else []
    terms = "level change and a linear pre-trend" + "".join(f", {e}" for e in extra)
    return f"segmented regression of the series ({fam}; {se} standard errors; t on n − p df) with a {terms}"
