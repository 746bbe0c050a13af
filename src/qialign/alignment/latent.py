r"""Fitting the latent alignment model (:mod:`qialign.alignment.latent_model`) with nutpie and
summarising it: scores per cluster x wave (posterior mean, SD, interval, the de-biased score), kept
joint draws of alignment, and the change between waves.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import norm

from qialign.alignment.debias import with_reliability
from qialign.alignment.latent_model import SurveyData, build_latent_model, survey_long
from qialign.alignment.roles import ROLES
from qialign.config import schema_defaults
from qialign.inference.compile_cache import configure_compile
from qialign.inference.sampling import compile_nutpie, nutpie_sample, take_initial_values
from qialign.results import DEFAULT_INTERVAL_PROB
from qialign.waves import file_order, order_codes, wave_label, wave_labels

# nutpie and ArviZ are imported inside the functions that compile and summarise the model, so that
# the descriptive path (``qialign.alignment``, the cross-check step) stays light


#: the posterior variables a latent fit keeps (``latent_scores`` reads these)
KEPT_VARIABLES = ("alignment", "clinical", "gap")


@dataclass
class LatentFit:
    """Scores (one row per cluster x wave), kept alignment draws (long), the posterior, diagnostics."""

    scores: pd.DataFrame
    draws: pd.DataFrame  # draw, wave, cluster, alignment
    idata: object
    diagnostics: dict
    timings: dict
    warnings: list[str]


def _interval(x: np.ndarray, prob: float, axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    tail = (1 - prob) / 2
    return np.quantile(x, tail, axis=axis), np.quantile(x, 1 - tail, axis=axis)


def _stacked(post, name: str) -> np.ndarray:
    """(chain * draw, ...) array of a posterior variable."""
    x = np.asarray(post[name])
    return x.reshape((-1, *x.shape[2:]))


def _diagnostics(idata, shape: tuple[int, int]) -> tuple[dict, np.ndarray, np.ndarray]:
    """Overall r_hat / bulk ESS / divergences, and per (wave, cluster) r_hat and bulk ESS of alignment."""
    import arviz_stats as azs

    if idata["posterior"].sizes.get("chain", 1) < 2:
        nan = np.full(shape, np.nan)
        return {"divergences": int(np.sum(idata["sample_stats"]["diverging"]))}, nan, nan
    summ = azs.summary(idata, var_names=["alignment"], kind="diagnostics", round_to="none")
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

    configure_compile()
    t0 = time.perf_counter()
    model = build_latent_model(data)
    # compiled once per survey (a rerun loads it from the cache); only what the scores read is
    # expanded per draw: a smaller second function for numba to compile
    compiled = compile_nutpie(model, take_initial_values(model), var_names=list(KEPT_VARIABLES))
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
    debiased = debiased_alignment(gap)
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
            row["alignment_debiased"] = float(debiased[w, j])
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


def debiased_alignment(gap: np.ndarray) -> np.ndarray:
    """De-biased latent alignment (wave, cluster) from gap draws (draw, wave, cluster, domain).

    The posterior mean of g² is (E g)² + Var g: a gap the survey measures poorly (few managers) adds
    its posterior variance to the misalignment. Subtracting it, E[g²] - Var(g) = (E g)², gives
    alignment_debiased = -sqrt(mean_d (E g_d)² + 1e-9), on the latent scale of ``alignment``.
    """
    return -np.sqrt(np.mean(gap.mean(axis=0) ** 2, axis=-1) + 1e-9)


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
