"""The simulated staff survey: latent clinical and managerial priorities per cluster, domain and
wave, the true alignment they imply, and graded-response Likert answers."""

import numpy as np
import pandas as pd

from qialign.alignment.roles import ROLES as ROLE_TYPES


def _domain_items(domains: dict) -> dict[str, list[str]]:
    """Domains as {domain: [items]}; an integer count k numbers items on from q1."""
    out, k = {}, 0
    for domain, items in domains.items():
        if isinstance(items, int):
            items = [f"q{k + i + 1}" for i in range(items)]
        out[domain] = list(items)
        k += len(items)
    return out


def _priorities(spec: dict, n_clusters: int, n_domains: int, rng: np.random.Generator):
    """Latent priorities eta[wave, cluster, role, domain] and raw alignment.

    eta_clin ~ N(0, s); eta_man = eta_clin + gap, gap_jd ~ N(0, m_j^2), m_j ~ U(lo, hi);
    later waves add N(0, wave_shift_sd) to every eta.  A_raw_j = -sqrt(mean_d gap_jd^2) at wave 1.
    """
    a = spec["alignment"]
    waves = spec["survey"]["waves"]
    scale = rng.uniform(*a["misalignment"], size=n_clusters)
    clinical = rng.normal(0.0, a["sd_priority"], size=(n_clusters, n_domains))
    gap = rng.normal(0.0, 1.0, size=(n_clusters, n_domains)) * scale[:, None]
    eta = np.empty((waves, n_clusters, 2, n_domains))
    eta[0, :, 0], eta[0, :, 1] = clinical, clinical + gap
    for w in range(1, waves):
        eta[w] = eta[w - 1] + rng.normal(0.0, a["wave_shift_sd"], size=eta[w].shape)
    return scale, eta, -np.sqrt((gap**2).mean(axis=1))


def _survey(spec: dict, clusters: list[str], eta: np.ndarray, rng: np.random.Generator):
    """Graded-response Likert answers: P(Y >= k+1) = logistic(a_i (eta + b_resp - tau_ik))."""
    sv = spec["survey"]
    domains = _domain_items(sv["domains"])
    items = [q for qs in domains.values() for q in qs]
    item_domain = np.array([d for d, qs in enumerate(domains.values()) for _ in qs])
    base = np.asarray(sv["thresholds"], dtype=float)
    tau = np.sort(base + rng.normal(0.0, sv["sd_threshold"], size=(len(items), base.size)), axis=1)
    disc = rng.uniform(*sv["discrimination"], size=len(items))
    reverse = np.isin(items, sv["reverse"])
    top = base.size + 1
    meta, answers = [], []
    for w in range(eta.shape[0]):
        for j, cluster in enumerate(clusters):
            for r, kind in enumerate(ROLE_TYPES):
                for group, (lo, hi) in sv["roles"][kind].items():
                    n = int(rng.integers(lo, hi + 1))
                    trait = eta[w, j, r][item_domain] + rng.normal(0.0, sv["sd_respondent"], (n, 1))
                    z = disc * trait + rng.logistic(size=trait.shape)
                    y = 1 + (z[:, :, None] > (disc[:, None] * tau)[None]).sum(axis=2)
                    y = np.where(reverse, top + 1 - y, y).astype(float)
                    y[rng.random(y.shape) < sv["missing_rate"]] = np.nan
                    answers.append(y)
                    meta += [(cluster, group, w + 1)] * n
    table = pd.DataFrame(meta, columns=["cluster", "role", "wave"])
    table.insert(0, "respondent", np.arange(1, len(table) + 1))
    answers_df = pd.DataFrame(np.vstack(answers), columns=items).astype("Int64")
    table = pd.concat([table, answers_df], axis=1)
    truth = {
        "scale": [1, top],
        "domains": domains,
        "reverse": [q for q, rev in zip(items, reverse, strict=True) if rev],
        "sd_respondent": sv["sd_respondent"],
        "items": {
            q: {
                "domain": list(domains)[item_domain[i]],
                "discrimination": disc[i],
                "thresholds": tau[i].tolist(),
            }
            for i, q in enumerate(items)
        },
    }
    return table, truth


#: a staff survey as hospitals run one (issue 15): 12 wards, ~14 clinical staff and 3-5 managers per
#: ward, 4 domains x 3 items on a 1-5 scale, ~3% of answers missing
STAFF_SURVEY = {
    "alignment": {"sd_priority": 1.0, "misalignment": [0.2, 1.5], "wave_shift_sd": 0.0},
    "survey": {
        "waves": 1,
        "roles": {"clinical": {"nurse": [12, 16]}, "managerial": {"manager": [3, 5]}},
        "domains": {"safety": 3, "flow": 3, "workload": 3, "learning": 3},
        "reverse": ["q3"],
        "sd_respondent": 0.5,
        "discrimination": [1.0, 2.5],
        "thresholds": [-2.0, -0.75, 0.5, 1.75],
        "sd_threshold": 0.3,
        "missing_rate": 0.03,
    },
}


def staff_survey(seed: int, n_wards: int = 12, spec: dict | None = None):
    """A simulated one-wave staff survey of ``n_wards`` wards (``STAFF_SURVEY`` unless ``spec``).

    Returns (survey table, the alignment config that reads it, true raw alignment per ward).
    """
    spec = spec or STAFF_SURVEY
    rng = np.random.default_rng(seed)
    wards = [f"w{j + 1:02d}" for j in range(n_wards)]
    _, eta, truth = _priorities(spec, n_wards, len(spec["survey"]["domains"]), rng)
    survey, meta = _survey(spec, wards, eta, rng)
    cfg = {
        "roles": {k: list(v) for k, v in spec["survey"]["roles"].items()},
        "scale": {"min": meta["scale"][0], "max": meta["scale"][1]},
        "domains": meta["domains"],
        "reverse": meta["reverse"],
    }
    return survey, cfg, pd.Series(truth, index=wards, name="alignment")
