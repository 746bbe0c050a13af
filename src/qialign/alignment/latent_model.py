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

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from qialign.alignment.roles import ROLES
from qialign.waves import ONE_WAVE, wave_labels, wave_order

# PyMC is imported inside the functions that build the model, so that the descriptive path
# (``qialign.alignment``, the cross-check step) stays light


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
        "respondent": list(range(respondent_slots(len(data.respondents)))),
    }


def respondent_slots(n: int) -> int:
    """Respondent effects in the model: ``n`` rounded up to a multiple of 2^(bits(n) - 4) (at least
    8), at most 1/8 more. The extra slots answer nothing (their effects keep the N(0, 1) prior), so
    that surveys of one design whose sizes round alike have one compiled model
    (:mod:`qialign.inference.structure_cache`): 205-208 respondents, 209-224, ..., 481-512."""
    step = max(8, 2 ** (int(n).bit_length() - 4))
    return -(-int(n) // step) * step


def build_latent_model(data: SurveyData):
    """The PyMC graded-response model of ``data`` (see the module docstring)."""
    import pymc as pm

    with pm.Model(coords=latent_coords(data)) as model:
        add_latent_terms(data)
    return model


def add_latent_terms(data: SurveyData):
    """Add the measurement model to the active PyMC model; return its alignment (wave, cluster).

    Used alone (``build_latent_model``) or inside an outcome model for ``propagation: joint``.
    Written without advanced indexing or scans (see ``dense_answers``): a short graph that numba
    compiles quickly, the same model as the module docstring's.
    """
    import pymc as pm
    import pytensor.tensor as pt

    n_w, n_j, _, n_d = data.shape
    dense = survey_arrays(dense_answers(data))
    disc, tau = _item_terms(data)
    clinical, gap = _role_means(data)
    alignment = pm.Deterministic(
        "alignment", -pt.sqrt(pt.mean(gap**2, axis=-1) + 1e-9), dims=("wave", "cluster")
    )
    sigma_b = pm.HalfNormal("sigma_respondent", 1.0)
    z_b = pm.Normal("z_respondent", 0.0, 1.0, dims="respondent")
    eta = pt.stack([clinical, clinical + gap], axis=2).reshape((n_w * n_j * 2, n_d))
    theta = pt.dot(pt.dot(dense.group, eta), dense.domain) + sigma_b * z_b[:, None]  # (N, I)
    # graded response, P(Y = k) = F(x - c_k-1) - F(x - c_k) with c_-1 = -inf, c_K-1 = +inf, written
    # as log F(hi) + log F(-lo) + log(1 - exp(lo - hi)), hi = a (theta - c_k-1), lo = a (theta - c_k);
    # the answered cutpoints are picked by one-hot contraction over the padded cutpoints (I, K + 1)
    big = np.full((len(data.items), 1), 1e3)
    cut = pt.concatenate([-big, tau, big], axis=1)[None]
    hi = disc * (theta - pt.sum(dense.below * cut, axis=2))
    lo = disc * (theta - pt.sum(dense.above * cut, axis=2))
    ll = -pt.softplus(-hi) - pt.softplus(lo) + pt.log1mexp(lo - hi)
    pm.Potential("loglik", pt.sum(dense.answered * ll))
    return alignment


def _item_terms(data: SurveyData):
    """Item discriminations a_i (item) and thresholds tau_i (item, cut), ordered within an item.

    The ordering is written out instead of PyMC's ordered transform (same density, no cumsum):
    t_i1 = u_i1, t_ik = t_i,k-1 + exp(u_ik), i.e. t = v U with v = (u_i1, exp(u_i2), ...) and U the
    upper-triangular ones; log p = sum N(t; 0, 1) + sum_k>1 u_ik (the Jacobian).
    """
    import pymc as pm
    import pytensor.tensor as pt

    k = data.n_categories
    mu_a = pm.Normal("mu_log_discrimination", 0.0, 1.0)
    sd_a = pm.HalfNormal("sd_log_discrimination", 0.5)
    z_a = pm.Normal("z_discrimination", 0.0, 1.0, dims="item")
    disc = pm.Deterministic("discrimination", pt.exp(mu_a + sd_a * z_a), dims="item")
    # thresholds = a common scale x standardised ordered cutpoints, so that the latent unit is set
    # by the clinical prior alone (independent cutpoint priors would stretch it: a volume effect)
    first = np.zeros((1, k - 1), bool)
    first[0, 0] = True
    start = np.where(first, -1.5, np.log(3.0 / max(k - 2, 1)))
    u = pm.Flat("u_threshold", dims=("item", "cut"), initval=np.tile(start, (len(data.items), 1)))
    raw = pt.dot(pt.switch(first, u, pt.exp(u)), np.triu(np.ones((k - 1, k - 1))))
    pm.Potential(
        "threshold_prior", pm.logp(pm.Normal.dist(0.0, 1.0), raw).sum() + pt.switch(first, 0.0, u).sum()
    )
    tau_scale = pm.HalfNormal("threshold_scale", 2.5)
    tau = pm.Deterministic("threshold", tau_scale * raw, dims=("item", "cut"))
    return disc, tau


def _role_means(data: SurveyData):
    """Latent clinical means and gaps (wave, cluster, domain), non-centred (module docstring)."""
    import pymc as pm
    import pytensor.tensor as pt

    n_w = data.shape[0]
    z_clin = pm.Normal("z_clinical", 0.0, 1.0, dims=("wave", "cluster", "domain"))
    mean_gap = pm.Normal("mean_gap", 0.0, 0.5, dims="domain")
    mu_s = pm.Normal("mu_log_gap_scale", -0.5, 0.5)
    tau_s = pm.HalfNormal("sd_log_gap_scale", 0.5)
    u_s = pm.Normal("z_gap_scale", 0.0, 1.0, dims="cluster")
    gap_scale = pm.Deterministic("gap_scale", pt.exp(mu_s + tau_s * u_s), dims="cluster")
    z_gap = pm.Normal("z_gap", 0.0, 1.0, dims=("wave", "cluster", "domain"))
    clinical, gap = z_clin, (mean_gap[None, :] + gap_scale[:, None] * z_gap[0])[None]
    if n_w > 1:  # random walk over waves: X[w] = X[w-1] + sd_X z_w, a cumulative sum as a product
        shift = pm.HalfNormal("sd_wave_shift", 0.5, dims="role")
        walk = np.tril(np.ones((n_w, n_w)))
        clinical = pt.tensordot(walk, pt.concatenate([z_clin[:1], shift[0] * z_clin[1:]], axis=0), 1)
        gap = pt.tensordot(walk, pt.concatenate([gap, shift[1] * z_gap[1:]], axis=0), 1)
    clinical = pm.Deterministic("clinical", clinical, dims=("wave", "cluster", "domain"))
    gap = pm.Deterministic("gap", gap, dims=("wave", "cluster", "domain"))
    return clinical, gap


@dataclass
class DenseAnswers:
    """The answers as one-hot arrays, so that the likelihood needs no gathers: respondent
    n's role group (wave, cluster, role) ``group`` (N, W J R), each item's domain ``domain`` (D, I),
    the answered category's lower and upper padded cutpoint ``below`` / ``above`` (N, I, K + 1) and
    ``answered`` (N, I), 0 where the item was not answered. N is ``respondent_slots``: rows past the
    respondents are all 0."""

    group: np.ndarray
    domain: np.ndarray
    below: np.ndarray
    above: np.ndarray
    answered: np.ndarray


def survey_arrays(dense: DenseAnswers) -> DenseAnswers:
    """``dense`` with its numeric arrays as named model data (``survey_<field>``): arguments of the
    compiled logp, not constants in it, so that another survey of the same shapes reuses the
    compilation (:mod:`qialign.inference.structure_cache`) and numba does not embed the arrays."""
    import pymc as pm

    return DenseAnswers(
        **{
            name: pm.Data(f"survey_{name}", value) if isinstance(value, np.ndarray) else value
            for name, value in vars(dense).items()
        }
    )


def dense_answers(data: SurveyData) -> DenseAnswers:
    """``data`` (long, one row per answer) as :class:`DenseAnswers`."""
    n, n_items, k = respondent_slots(len(data.respondents)), len(data.items), data.n_categories
    n_d = len(data.domains)
    group = np.zeros((n, int(np.prod(data.shape[:3]))))
    group[data.respondent, data.cell // n_d] = 1.0
    domain = np.zeros((n_d, n_items))
    domain[data.item_domain, np.arange(n_items)] = 1.0
    answered = np.zeros((n, n_items))
    answered[data.respondent, data.item] = 1.0
    pad = np.arange(k + 1)
    if isinstance(data.y, np.ndarray):  # arrays (model data: ``survey_arrays``)
        y = np.zeros((n, n_items), dtype=int)  # unanswered: category 0, masked out by ``answered``
        y[data.respondent, data.item] = data.y
        below, above = (pad == y[..., None]).astype(float), (pad == y[..., None] + 1).astype(float)
    else:  # answers as data to swap (SBC of the joint model): the same arrays, symbolic
        import pytensor.tensor as pt

        y = pt.set_subtensor(pt.zeros((n, n_items), dtype="int64")[data.respondent, data.item], data.y)
        below = pt.eq(pad, y[..., None]).astype("float64")
        above = pt.eq(pad, y[..., None] + 1).astype("float64")
    return DenseAnswers(group=group, domain=domain, below=below, above=above, answered=answered)
