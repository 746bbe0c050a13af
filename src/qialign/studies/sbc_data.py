"""The fixed design of an SBC study and the data one replicate simulates on it.

Cells: a stepped wedge of ``clusters`` x ``periods`` cells with ``n`` patients each and the
family's sufficient statistics as placeholders (every replicate replaces them). The outcome is
drawn by ``pm.sample_prior_predictive`` from the model itself; what the prior predictive cannot
draw is completed here from the same prior draw:

- gaussian / lognormal: the model observes the cell sum of y* and holds its sum of squares as
  data. For n iid N(m, s) values the sum S ~ N(n m, sqrt(n) s) (drawn by the model) and the
  within-cell sum of squares SS = sumsq - S^2 / n ~ s^2 chi^2_(n-1) are independent, so
  sumsq = s^2 chi^2_(n-1) + S^2 / n completes an exact draw of (S, sumsq).
- ``propagation: joint``: the survey's graded-response likelihood is a Potential, which prior
  predictive sampling ignores, so the answers are drawn here: P(Y >= k) = logistic(a_i (theta_n -
  tau_i,k-1)), theta_n = eta[cell] + sigma_b z_n, with the prior draw's parameters. The latent
  model writes its ordered cutpoints as a Flat variable u with a Potential prior (iid N(0, 1)
  restricted to the ordered region, ``alignment.latent_model``), which prior sampling cannot
  draw either: the ordered region's draw is the sorted iid N(0, 1) draw (order statistics), t,
  mapped back to u_1 = t_1, u_k = log(t_k - t_k-1) (``threshold_draw``) and fixed in the model
  (``pm.do``) before the rest is drawn.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats
from scipy.special import expit, logit

from qialign.alignment.latent import SurveyData
from qialign.alignment.roles import ROLES
from qialign.families import FAMILIES


def intercept_centre(cfg: dict) -> float:
    """Link-scale centre of the intercept prior: logit or log of ``design/baseline``; 0 for the
    continuous families (y* standardised). Fixed, so that the prior does not depend on the data."""
    kind = FAMILIES[cfg["family"]].kind
    baseline = float(cfg["design"]["baseline"])
    return float(logit(baseline)) if kind == "binary" else float(np.log(baseline)) if kind == "count" else 0.0


def _placeholders(family: str, n: int, baseline: float) -> dict:
    """Sufficient statistics of one cell before a replicate replaces them."""
    kind = FAMILIES[family].kind
    if kind == "binary":
        return {"events": int(round(baseline * n))}
    if kind == "count":
        return {"count": int(round(baseline * n)), "exposure": float(n)}
    return {"sum": 0.0, "sumsq": float(n)}


def sbc_cells(cfg: dict) -> tuple[pd.DataFrame, pd.Series]:
    """Stepped-wedge cells (cluster x period, ``n`` patients each) and per-cluster alignment.

    Clusters cross over in (periods - 1) evenly sized groups, starting at period 2, so period 1 is
    all control and the last all intervention. Alignment: Blom normal scores, assigned to clusters
    in a fixed random order (seeded) so that it is not confounded with the crossover time. Count
    exposure is n (a rate per patient).
    """
    d = cfg["design"]
    J, T, n = int(d["clusters"]), int(d["periods"]), int(d["n"])
    clusters = [f"c{j:02d}" for j in range(J)]
    starts = 2 + (np.arange(J) * (T - 1)) // J
    stats_ = _placeholders(cfg["family"], n, float(d["baseline"]))
    rows = []
    for j, c in enumerate(clusters):
        for t in range(1, T + 1):
            treated = int(t >= starts[j])
            exposure = int(t - starts[j] + 1) if treated else 0
            rows.append(
                {"cluster": c, "site": "all", "period": t, "treated": treated}
                | {"exposure_time": exposure, "n": n, **stats_}
            )
    scores = stats.norm.ppf((np.arange(1, J + 1) - 0.375) / (J + 0.25))
    order = np.random.default_rng(int(cfg["seed"])).permutation(J)
    alignment = pd.Series(scores[order], index=clusters, name="alignment")
    return pd.DataFrame(rows), alignment


def sbc_survey(cfg: dict, clusters: list[str], answers=None) -> SurveyData:
    """The simulated survey of a joint model: one wave, ``clinical`` and ``managerial``
    respondents per cluster, each answering every item (``domains`` x ``items``, ``categories``
    answer levels). ``answers`` (numpy or a PyTensor shared variable) holds the categories 0..K-1
    per answer row; the default is a placeholder."""
    s = cfg["survey"]
    D, per_domain, K = int(s["domains"]), int(s["items"]), int(s["categories"])
    item_domain = np.repeat(np.arange(D), per_domain)
    resp_role = [(j, r) for j in range(len(clusters)) for r, k in enumerate(ROLES) for _ in range(s[k])]
    n_resp, n_item = len(resp_role), len(item_domain)
    respondent = np.repeat(np.arange(n_resp), n_item)
    item = np.tile(np.arange(n_item), n_resp)
    j, role = (np.array([x[i] for x in resp_role])[respondent] for i in (0, 1))
    shape = (1, len(clusters), len(ROLES), D)
    cell = np.ravel_multi_index((np.zeros_like(j), j, role, item_domain[item]), shape)
    counts = pd.DataFrame(
        {"wave": "1", "cluster": clusters} | {f"n_{k}": int(s[k]) for k in ROLES}, index=range(len(clusters))
    )
    return SurveyData(
        y=np.full(len(item), K // 2, dtype="int64") if answers is None else answers,
        item=item,
        respondent=respondent,
        cell=cell,
        waves=["1"],
        clusters=list(clusters),
        domains=[f"d{d + 1}" for d in range(D)],
        items=[f"q{i + 1}" for i in range(n_item)],
        item_domain=item_domain,
        n_categories=K,
        counts=counts,
        respondents=list(range(n_resp)),
    )


def _scalar_or_array(prior, name: str) -> np.ndarray:
    """One prior draw of a variable without its (chain, draw) dimensions."""
    x = np.asarray(prior[name], float)
    return x.reshape(x.shape[2:])


def threshold_draw(survey: SurveyData, rng: np.random.Generator) -> np.ndarray:
    """One prior draw of the latent model's unconstrained cutpoints u (item, cut): sorted iid
    N(0, 1) cutpoints t, u_1 = t_1 and u_k = log(t_k - t_k-1) (module docstring)."""
    t = np.sort(rng.standard_normal((len(survey.items), survey.n_categories - 1)), axis=-1)
    return np.concatenate([t[:, :1], np.log(np.diff(t, axis=-1))], axis=-1)


def simulate_answers(prior, survey: SurveyData, rng: np.random.Generator) -> np.ndarray:
    """Graded-response answers (0..K-1 per answer row) given one prior draw (module docstring)."""
    disc = _scalar_or_array(prior, "discrimination")
    tau = _scalar_or_array(prior, "threshold")
    clinical, gap = _scalar_or_array(prior, "clinical"), _scalar_or_array(prior, "gap")
    eta = np.stack([clinical, clinical + gap], axis=2).reshape(-1)
    z_b = _scalar_or_array(prior, "z_respondent")
    theta = eta[survey.cell] + float(_scalar_or_array(prior, "sigma_respondent")) * z_b[survey.respondent]
    p_at_least = expit(
        disc[survey.item][:, None] * (theta[:, None] - tau[survey.item])
    )  # P(Y >= k), k = 1..K-1
    u = rng.random(len(theta))
    return (u[:, None] < p_at_least).sum(axis=1).astype("int64")


def simulate_sumsq(sums: np.ndarray, n: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Cell sums of squares given the drawn cell sums: sigma^2 chi^2_(n-1) + sum^2 / n."""
    return sigma**2 * rng.chisquare(n - 1) + sums**2 / n
