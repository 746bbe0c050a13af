r"""Latent alignment: a Bayesian graded-response measurement model of the staff survey.

Long format, one row per answered item (missing answers are simply absent). Reverse-coded items are
flipped first (``min + max - x``). For respondent n in cluster j, role r (clinical | managerial),
wave w, answering item i of domain d(i) with category k = 0..K-1 (K = max - min + 1):

    P(Y >= k) = logistic(a_i (theta_n - tau_ik)),   theta_n = eta[w, j, r, d(i)] + b_n

    log a_i = mu_a + sd_a z_i                     item discrimination (positive), mu_a ~ N(0, 1),
                                                  sd_a ~ HalfNormal(0.5)
    tau_i = s_tau t_i, t_i ~ N(0, 1) ordered      item thresholds (K - 1 cutpoints), s_tau ~ HalfNormal(2.5)
    b_n = sigma_b z_n,  sigma_b ~ HalfNormal(1)   respondent random effect

Latent role-domain means, non-centred and partially pooled over clusters:

    clinical[1, j, d]   = z_jd                    the unit of the latent scale is the
                                                  between-cluster SD of clinical priorities
    gap[1, j, d]        = g_d + s_j z'_jd,        log s_j = mu_s + tau_s u_j (cluster gap scale)
    X[w, j, d]          = X[w - 1, j, d] + sd_X z''_wjd   (later waves: random walk, X = clinical, gap)
    managerial          = clinical + gap

    alignment[w, j]     = -sqrt(mean_d gap[w, j, d]^2 + 1e-9)

the same definition (and scale) as the simulator's true raw alignment (``qialign.studies.simulate``: clinical
priorities N(0, 1) over clusters, alignment -sqrt(mean_d gap^2)). A cluster with few respondents is
pulled toward the population (g_d, the typical gap scale); one without managers (or clinicians) keeps
its prior, which is wide, and raises a warning. Item parameters are shared by the waves (measurement
invariance), so wave differences are differences in the latent means. Sampling uses nutpie.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.stats import norm

from qialign.alignment.debias import with_reliability
from qialign.alignment.roles import ROLES
from qialign.config import schema_defaults
from qialign.inference.compile_cache import configure_compile
from qialign.inference.sampling import nutpie_sample
from qialign.results import DEFAULT_INTERVAL_PROB
from qialign.waves import ONE_WAVE, file_order, order_codes, wave_label, wave_labels, wave_order

# PyMC, nutpie and ArviZ are imported inside the functions that build, compile and summarise the
# model, so that the descriptive path (``qialign.alignment``, the cross-check step) stays light


@dataclass
class SurveyData:
    """The survey in long format (one row per answered item) plus the index maps."""

    y: np.ndarray  # category 0..K-1
    item: np.ndarray
    respondent: np.ndarray
    cell: np.ndarray  # flat index into (wave, cluster, role, domain)
    waves: list[str]  # labels, first to last (qialign.waves.wave_order)
    clusters: list[str]
    domains: list[str]
    items: list[str]
    item_domain: np.ndarray
    n_categories: int
    counts: pd.DataFrame  # wave, cluster, n_clinical, n_managerial (respondents with >= 1 answer)
    respondents: list = field(default_factory=list)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self.waves), len(self.clusters), len(ROLES), len(self.domains))


@dataclass
class LatentFit:
    """Scores (one row per cluster x wave), kept alignment draws (long), the posterior, diagnostics."""

    scores: pd.DataFrame
    draws: pd.DataFrame  # draw, wave, cluster, alignment
    idata: object
    diagnostics: dict
    timings: dict
    warnings: list[str]


def survey_long(survey: pd.DataFrame, cfg: dict, clusters: list[str]) -> SurveyData:
    """Long format of a validated survey: reverse items flipped, unanswered items dropped."""
    lo, hi = int(cfg["scale"]["min"]), int(cfg["scale"]["max"])
    domains = list(cfg["domains"])
    items = [q for qs in cfg["domains"].values() for q in qs]
    item_domain = np.array([d for d, qs in enumerate(cfg["domains"].values()) for _ in qs])
    role_of = {g: r for r, groups in enumerate(ROLES) for g in cfg["roles"][groups]}
    s = survey.reset_index(drop=True)
    cluster = s["cluster"]
    keep = cluster.isin(clusters).to_numpy() & s["role"].isin(role_of).to_numpy()
    s, cluster = s[keep].reset_index(drop=True), cluster[keep].reset_index(drop=True)
    wave = wave_labels(s["wave"]) if "wave" in s else pd.Series(ONE_WAVE, index=s.index, dtype="object")
    waves = wave_order(wave, cfg.get("waves")) or [ONE_WAVE]
    role = s["role"].map(role_of).to_numpy()
    answers = s[items].apply(pd.to_numeric, errors="coerce").to_numpy(dtype="float64", copy=True)
    reverse = np.isin(items, cfg["reverse"])
    answers[:, reverse] = lo + hi - answers[:, reverse]
    resp, item = np.nonzero(np.isfinite(answers))
    w_idx = wave.map({w: k for k, w in enumerate(waves)}).to_numpy(dtype=int)
    j_idx = np.array([clusters.index(c) for c in cluster]) if len(cluster) else np.zeros(0, int)
    shape = (len(waves), len(clusters), len(ROLES), len(domains))
    cell = np.ravel_multi_index((w_idx[resp], j_idx[resp], role[resp], item_domain[item]), shape)
    # respondents who answered at least one item, renumbered 0..N-1
    used, resp_idx = np.unique(resp, return_inverse=True)
    answered = pd.DataFrame({"wave": np.asarray(waves)[w_idx[used]], "cluster": cluster.to_numpy()[used]})
    answered["role"] = np.asarray(ROLES)[role[used]]
    counts = answered.groupby(["wave", "cluster", "role"]).size().unstack("role").reindex(columns=list(ROLES))
    full = pd.MultiIndex.from_product([waves, clusters], names=["wave", "cluster"])
    counts = counts.reindex(full).fillna(0).astype(int).add_prefix("n_").reset_index()
    return SurveyData(
        y=(answers[resp, item] - lo).astype("int64"),
        item=item,
        respondent=resp_idx,
        cell=cell,
        waves=list(waves),
        clusters=list(clusters),
        domains=domains,
        items=items,
        item_domain=item_domain,
        n_categories=hi - lo + 1,
        counts=counts,
        respondents=s["respondent"].to_numpy()[used].tolist(),
    )


def latent_coords(data: SurveyData) -> dict:
    """PyMC coordinates of the measurement model (``cluster`` must match a host model's)."""
    return {
        "wave": data.waves,
        "cluster": data.clusters,
        "role": list(ROLES),
        "domain": data.domains,
        "item": data.items,
        "cut": list(range(1, data.n_categories)),
        "respondent": list(range(len(data.respondents))),
    }


def build_latent_model(data: SurveyData):
    """The PyMC graded-response model of ``data`` (see the module docstring)."""
    import pymc as pm

    with pm.Model(coords=latent_coords(data)) as model:
        add_latent_terms(data)
    return model


def add_latent_terms(data: SurveyData):
    """Add the measurement model to the active PyMC model; return its alignment (wave, cluster).

    Used alone (``build_latent_model``) or inside an outcome model for ``propagation: joint``.
    """
    import pymc as pm
    import pytensor.tensor as pt
    from pymc.distributions.transforms import ordered

    n_w, n_j, _, n_d = data.shape
    k = data.n_categories
    # hierarchical log-discriminations: their common level is left to the clinical prior (the unit)
    mu_a = pm.Normal("mu_log_discrimination", 0.0, 1.0)
    sd_a = pm.HalfNormal("sd_log_discrimination", 0.5)
    z_a = pm.Normal("z_discrimination", 0.0, 1.0, dims="item")
    disc = pm.Deterministic("discrimination", pt.exp(mu_a + sd_a * z_a), dims="item")
    # thresholds = a common scale x standardised ordered cutpoints, so that the latent unit is set
    # by the clinical prior alone (independent cutpoint priors would stretch it: a volume effect)
    init = np.tile(np.linspace(-1.5, 1.5, k - 1), (len(data.items), 1))
    raw = pm.Normal("z_threshold", 0.0, 1.0, dims=("item", "cut"), transform=ordered, initval=init)
    tau_scale = pm.HalfNormal("threshold_scale", 2.5)
    tau = pm.Deterministic("threshold", tau_scale * raw, dims=("item", "cut"))
    sigma_b = pm.HalfNormal("sigma_respondent", 1.0)
    z_b = pm.Normal("z_respondent", 0.0, 1.0, dims="respondent")

    z_clin = pm.Normal("z_clinical", 0.0, 1.0, dims=("wave", "cluster", "domain"))
    mean_gap = pm.Normal("mean_gap", 0.0, 0.5, dims="domain")
    mu_s = pm.Normal("mu_log_gap_scale", -0.5, 0.5)
    tau_s = pm.HalfNormal("sd_log_gap_scale", 0.5)
    u_s = pm.Normal("z_gap_scale", 0.0, 1.0, dims="cluster")
    gap_scale = pm.Deterministic("gap_scale", pt.exp(mu_s + tau_s * u_s), dims="cluster")
    z_gap = pm.Normal("z_gap", 0.0, 1.0, dims=("wave", "cluster", "domain"))
    clin_steps, gap_first = z_clin, mean_gap[None, :] + gap_scale[:, None] * z_gap[0]
    gap_steps = gap_first[None]
    if n_w > 1:
        shift = pm.HalfNormal("sd_wave_shift", 0.5, dims="role")
        clin_steps = pt.concatenate([z_clin[:1], shift[0] * z_clin[1:]], axis=0)
        gap_steps = pt.concatenate([gap_first[None], shift[1] * z_gap[1:]], axis=0)
    clinical = pm.Deterministic("clinical", pt.cumsum(clin_steps, axis=0), dims=("wave", "cluster", "domain"))
    gap = pm.Deterministic("gap", pt.cumsum(gap_steps, axis=0), dims=("wave", "cluster", "domain"))
    alignment = pm.Deterministic(
        "alignment", -pt.sqrt(pt.mean(gap**2, axis=-1) + 1e-9), dims=("wave", "cluster")
    )
    eta = pt.stack([clinical, clinical + gap], axis=2).reshape((n_w * n_j * 2 * n_d,))
    theta = eta[data.cell] + sigma_b * z_b[data.respondent]
    a = disc[data.item]
    # graded response, P(Y = k) = F(x - c_k-1) - F(x - c_k) with c_-1 = -inf, c_K-1 = +inf, written
    # as log F(hi) + log F(-lo) + log(1 - exp(lo - hi)), hi = a (theta - tau_k-1), lo = a (theta - tau_k)
    big = np.full((len(data.items), 1), 1e3)
    cut = pt.concatenate([-big, tau, big], axis=1)
    hi = a * (theta - cut[data.item, data.y])
    lo = a * (theta - cut[data.item, data.y + 1])
    pm.Potential(
        "loglik",
        pt.sum(-pt.softplus(-hi) - pt.softplus(lo) + pt.log1mexp(lo - hi)),
    )
    return alignment


def _interval(x: np.ndarray, prob: float, axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    tail = (1 - prob) / 2
    return np.quantile(x, tail, axis=axis), np.quantile(x, 1 - tail, axis=axis)


def _stacked(post, name: str) -> np.ndarray:
    """(chain * draw, ...) array of a posterior variable."""
    x = np.asarray(post[name])
    return x.reshape((-1, *x.shape[2:]))


def _diagnostics(idata, shape: tuple[int, int]) -> tuple[dict, np.ndarray, np.ndarray]:
    """Overall r_hat / bulk ESS / divergences, and per (wave, cluster) r_hat and bulk ESS of alignment."""
    import arviz as az

    if idata["posterior"].sizes.get("chain", 1) < 2:
        nan = np.full(shape, np.nan)
        return {"divergences": int(np.sum(idata["sample_stats"]["diverging"]))}, nan, nan
    summ = az.summary(idata, var_names=["alignment"], kind="diagnostics", round_to="none")
    details = {
        "r_hat_max": float(summ["r_hat"].max()),
        "ess_bulk_min": float(summ["ess_bulk"].min()),
        "divergences": int(np.sum(idata["sample_stats"]["diverging"])),
    }
    return details, summ["r_hat"].to_numpy().reshape(shape), summ["ess_bulk"].to_numpy().reshape(shape)


def latent_scores(
    survey: pd.DataFrame,
    cfg: dict,
    clusters: list[str],
    *,
    seed: int,
    sampler: dict | None = None,
    prob: float = DEFAULT_INTERVAL_PROB,
) -> LatentFit:
    """Fit the graded-response model with nutpie; one score row per cluster x wave.

    Rows hold the posterior mean, SD and equal-tailed ``prob`` interval of the raw alignment, role
    domain means and gaps on the latent scale (posterior means), respondent counts, and the cluster's
    r_hat / bulk ESS. ``draws`` keeps ``sampler['keep']`` evenly thinned joint draws of alignment.
    A cluster-wave without managers or clinicians warns and keeps its (wide) prior; it never raises.
    """
    s = {**schema_defaults("alignment/latent"), **(sampler or {})}
    data = survey_long(survey, cfg, clusters)
    notes = []
    for row in data.counts.itertuples(index=False):
        missing = [r for r in ROLES if getattr(row, f"n_{r}") == 0]
        if missing:
            notes.append(
                f"cluster {row.cluster} wave {row.wave}: no {' or '.join(missing)} respondents; "
                "its latent alignment is its prior (wide interval)"
            )
    for note in notes:
        warnings.warn(note, stacklevel=2)

    import nutpie

    configure_compile()
    t0 = time.perf_counter()
    model = build_latent_model(data)
    compiled = nutpie.compile_pymc_model(model)
    t1 = time.perf_counter()
    idata = nutpie_sample(compiled, s, seed)
    t2 = time.perf_counter()
    post = idata["posterior"]
    align = _stacked(post, "alignment")  # (S, W, J)
    clinical, gap = _stacked(post, "clinical"), _stacked(post, "gap")
    diag, r_hat, ess = _diagnostics(idata, align.shape[1:])
    lower, upper = _interval(align, prob)
    mean_clin, mean_gap = clinical.mean(axis=0), gap.mean(axis=0)
    mean_man = (clinical + gap).mean(axis=0)
    counts = data.counts.set_index(["wave", "cluster"])
    rank = order_codes(data.waves)
    rows = []
    for w, wave in enumerate(data.waves):
        for j, cluster in enumerate(data.clusters):
            row = {"cluster": cluster, "wave": wave, "wave_order": rank[wave], "method": "latent"}
            row["alignment"] = float(align[:, w, j].mean())
            row["alignment_sd"] = float(align[:, w, j].std(ddof=1))
            row["lower"], row["upper"] = float(lower[w, j]), float(upper[w, j])
            for r in ROLES:
                row[f"n_{r}"] = int(counts.loc[(wave, cluster), f"n_{r}"])
            for d, name in enumerate(data.domains):
                row[f"clinical_{name}"] = float(mean_clin[w, j, d])
                row[f"managerial_{name}"] = float(mean_man[w, j, d])
                row[f"gap_{name}"] = -float(mean_gap[w, j, d])  # clinical - managerial, as descriptive
            row["r_hat"], row["ess_bulk"] = float(r_hat[w, j]), float(ess[w, j])
            rows.append(row)
    return LatentFit(
        scores=with_reliability(pd.DataFrame(rows)),
        draws=_kept_draws(data, align, int(s["keep"])),
        idata=idata,
        diagnostics=diag,
        timings={"compile_s": t1 - t0, "sample_s": t2 - t1},
        warnings=notes,
    )


def _kept_draws(data: SurveyData, align: np.ndarray, keep: int) -> pd.DataFrame:
    """Long table of ``keep`` evenly thinned joint draws of alignment ``align`` (S, W, J): draw, wave,
    wave_order, cluster, alignment."""
    picked = np.unique(np.linspace(0, align.shape[0] - 1, min(keep, align.shape[0])).round().astype(int))
    kept = align[picked]  # (K, W, J)
    per_draw = len(data.waves) * len(data.clusters)
    rank = order_codes(data.waves)
    return pd.DataFrame(
        {
            "draw": np.repeat(np.arange(len(picked)), per_draw),
            "wave": np.tile(np.repeat(data.waves, len(data.clusters)), len(picked)),
            "wave_order": np.tile(np.repeat([rank[w] for w in data.waves], len(data.clusters)), len(picked)),
            "cluster": np.tile(data.clusters, len(picked) * len(data.waves)),
            "alignment": kept.ravel(),
        }
    )


def draws_matrix(draws: pd.DataFrame, wave: str, clusters: list[str]) -> np.ndarray:
    """(draw, cluster) array of raw alignment draws for one wave (its label), columns in ``clusters``
    order."""
    at = draws[wave_labels(draws["wave"]) == wave_label(wave)]
    at = at.pivot(index="draw", columns="cluster", values="alignment")
    return at.reindex(columns=clusters).to_numpy()


def alignment_change(
    scores: pd.DataFrame, draws: pd.DataFrame | None = None, *, prob: float = DEFAULT_INTERVAL_PROB
) -> pd.DataFrame:
    """Change in alignment from the first wave to each later one, per cluster, with an interval.

    Waves are labels in the order ``scores`` records (``wave_order``, :func:`qialign.waves.file_order`);
    ``wave_to_order`` is the later wave's place in that order (2 = the second wave).

    With ``draws`` (latent) the difference and interval come from the joint posterior draws; without
    them (descriptive) the interval is normal, difference +/- z sqrt(sd_1^2 + sd_w^2), the two waves'
    respondents being independent samples.
    """
    cols = ["cluster", "method", "wave_from", "wave_to", "wave_to_order", "alignment_from", "alignment_to"]
    cols += ["difference", "difference_sd", "lower", "upper"]
    waves = file_order(scores)
    if len(waves) < 2:
        return pd.DataFrame(columns=cols)
    first = waves[0]
    by = scores.assign(wave=wave_labels(scores["wave"])).set_index(["wave", "cluster"])
    clusters = list(dict.fromkeys(scores["cluster"]))
    rows = []
    for k, later in enumerate(waves[1:], start=2):
        if draws is not None:
            diff = draws_matrix(draws, later, clusters) - draws_matrix(draws, first, clusters)
            lo, hi = _interval(diff, prob)
            sd = diff.std(axis=0, ddof=1)
        for j, cluster in enumerate(clusters):
            a0, a1 = by.loc[(first, cluster)], by.loc[(later, cluster)]
            row = {
                "cluster": cluster,
                "method": a0["method"],
                "wave_from": first,
                "wave_to": later,
                "wave_to_order": k,
                "alignment_from": a0["alignment"],
                "alignment_to": a1["alignment"],
            }
            if draws is not None:
                # the mean from the scores (full posterior), the spread from the (kept) joint draws
                d = a1["alignment"] - a0["alignment"]
                row.update(difference=d, difference_sd=sd[j], lower=lo[j], upper=hi[j])
            else:
                d = a1["alignment"] - a0["alignment"]
                sd_d = float(np.hypot(a0["alignment_sd"], a1["alignment_sd"]))
                z = norm.ppf(0.5 + prob / 2)
                row.update(difference=d, difference_sd=sd_d, lower=d - z * sd_d, upper=d + z * sd_d)
            rows.append(row)
    return pd.DataFrame(rows, columns=cols)
