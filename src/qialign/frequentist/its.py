r"""Interrupted time series (ITS): segmented regression, the frequentist cross-check.

Single series (Lopez Bernal, Cummins & Gasparrini 2017, Int J Epidemiol 46:348), with
:math:`t_0` = ``interruption``, the time of the first post-intervention observation:

.. math::

    g(\mathrm E\,y_t) = \log E_t + \beta_0 + \beta_1 t + \beta_2 X_t + \beta_3 (t - t_0) X_t
        + \sum_k [a_k \sin(2\pi k s_t / P) + b_k \cos(2\pi k s_t / P)],
    \qquad X_t = 1\{t \ge t_0\}

* ``time`` :math:`\beta_1`: pre-intervention trend per time unit; ``level`` :math:`\beta_2`:
  the change at :math:`t_0` (the first post-intervention point) against the extrapolated
  pre-trend; ``slope`` :math:`\beta_3`: the change in trend per time unit after :math:`t_0`
  (the time-since-interruption term is 0 before and at :math:`t_0`). ``slope_change=False``
  drops :math:`\beta_3` (the tutorial's step-change model).
* Seasonality: Fourier pairs of period :math:`P` in the seasonal position :math:`s_t`
  (``season`` column, default the time column). ``harmonics=K`` uses :math:`k = 1..K`. R's
  ``tsModel::harmonic(x, nfreq, period)`` (used by the tutorial) takes *dyadic* frequencies
  :math:`k = 2^0, ..., 2^{nfreq-1}`: the same as ``harmonics=nfreq`` for ``nfreq <= 2``;
  for more pass the frequencies explicitly, e.g. ``harmonics=(1, 2, 4)``.
* :math:`\log E_t`: the offset, log of the ``offset`` column (population / exposure).
* Link :math:`g`: log for ``poisson``/``quasipoisson``, identity for ``gaussian`` (no offset).

Controlled ITS (``control`` column marking a treated and a control series, stacked in long
form): with :math:`G = 1` for the treated series, the design is
:math:`[1, t, X, (t-t_0)X] \otimes [1, G]` plus seasonal terms common to both series;
``group:level`` and ``group:slope`` are the differences in change (treated minus control),
the intervention effects.

Standard errors (intervals ``reference="normal"``: Wald, as R's ``confint.default``, ``Epi::ci.lin``;
``"t"``: t on n - p df, R's ``confint.lm``, the cross-check's: few time points, estimated dispersion):

* ``se="model"``: :math:`\hat\phi (X^T W X)^{-1}`, :math:`\hat\phi = 1` for ``poisson``, and
  the Pearson :math:`\chi^2/(n - p)` for ``quasipoisson`` (R's ``family=quasipoisson``) and
  ``gaussian`` (the residual variance).
* ``se="newey-west"``: :math:`B\,S\,B` with :math:`B = (X^T W X)^{-1}`,
  :math:`u_t = x_t (y_t - \mu_t)` (log/identity are canonical links) and Bartlett weights
  :math:`S = \sum_{|l| \le L} (1 - |l|/(L+1)) \sum_t u_t u_{t-l}^T`, no small-sample factor
  (statsmodels ``cov_type="HAC"``, ``use_correction=False``). :math:`L` = ``maxlags``,
  default :math:`\lfloor 4 (T/100)^{2/9} \rfloor` (Newey & West 1994; T time points). The
  dispersion does not enter: quasi-likelihood divides the score by :math:`\phi` and the
  information by :math:`\phi`, so :math:`\phi` cancels and ``poisson`` and ``quasipoisson``
  give the same Newey-West covariance (``dispersion`` is still reported). With a control
  series the scores of the series are summed within each time point before the Bartlett
  weighting (Driscoll & Kraay 1998; statsmodels ``cov_type="hac-groupsum"``), which allows
  for correlation between the series at equal and nearby times; with one series this is
  exactly Newey-West.

Entry point: :func:`segmented_regression`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import statsmodels.api as sm
from scipy import stats

from ..errors import QialignError
from ..families import FAMILIES, statsmodels_family
from ..results import DEFAULT_INTERVAL_PROB
from .crosscheck import COLUMNS

__all__ = ["ITSResult", "segmented_regression", "newey_west_maxlags", "fourier_terms", "ITS_FAMILIES"]

ITS_FAMILIES = ("quasipoisson", "poisson", "gaussian")
SE_KINDS = ("model", "newey-west")
REFERENCES = ("normal", "t")
TERM_COLUMNS = (
    "term", "estimate", "se", "statistic", "p", "ci_low", "ci_high", "ratio", "ratio_low", "ratio_high",
)  # fmt: skip
_TREATED = {"treated", "treatment", "intervention"}
_CONTROL = {"control"}


@dataclass
class ITSResult:
    """Segmented-regression fit.

    ``terms``: one row per coefficient (``TERM_COLUMNS``): estimate, statistic estimate / se, its
    p and CI (normal or t on ``df_resid``: ``reference``) on the link scale (log rate for counts)
    and, for count families, ``ratio`` = exp(estimate) with its CI (rate ratios; NaN for gaussian).
    ``curves``: one row per observation with ``observed``, ``fitted`` (all terms), ``trend``
    (seasonal columns at their sample means, the deseasonalised fit) and ``counterfactual``
    (deseasonalised, effect terms zeroed), on the response scale at each row's exposure.
    ``dispersion``: Pearson chi2 / (n - p), reported for every family (it scales the model SEs of
    quasipoisson and gaussian only). ``maxlags``: the Newey-West lag (None for model SEs).
    ``effect_terms``: the terms zeroed in ``counterfactual``.
    """

    terms: pd.DataFrame
    curves: pd.DataFrame
    family: str
    se: str
    dispersion: float
    maxlags: int | None
    nobs: int
    df_resid: int
    alpha: float
    effect_terms: tuple[str, ...]
    design: pd.DataFrame = field(repr=False)
    model_result: object = field(repr=False, default=None)

    def term(self, name: str) -> pd.Series:
        """The ``terms`` row of one coefficient (e.g. ``"level"``)."""
        rows = self.terms.loc[self.terms["term"] == name]
        if rows.empty:
            raise KeyError(f"no term {name!r}; terms are {list(self.terms['term'])}")
        return rows.iloc[0]


def newey_west_maxlags(n_times: int) -> int:
    """Newey & West (1994) plug-in truncation lag :math:`\\lfloor 4 (T/100)^{2/9} \\rfloor`."""
    return int(math.floor(4.0 * (n_times / 100.0) ** (2.0 / 9.0)))


def fourier_terms(position, harmonics: int | Sequence[int], period: float) -> pd.DataFrame:
    """``sin_k`` and ``cos_k`` = sin/cos(2*pi*k*position/period) for each frequency k.

    ``harmonics``: K (k = 1..K) or an explicit sequence of positive integer frequencies.
    """
    freqs = _frequencies(harmonics)
    if not (np.isfinite(period) and period > 0):
        raise QialignError(f"ITS: period must be a positive number, got {period!r}")
    s = np.asarray(position, dtype=float)
    cols: dict[str, np.ndarray] = {}
    for k in freqs:
        angle = 2.0 * np.pi * k * s / period
        cols[f"sin{k}"] = np.sin(angle)
        cols[f"cos{k}"] = np.cos(angle)
    return pd.DataFrame(cols)


def segmented_regression(
    df: pd.DataFrame,
    *,
    count: str,
    time: str,
    interruption: float,
    offset: str | None = None,
    harmonics: int | Sequence[int] = 0,
    period: float = 12,
    season: str | None = None,
    slope_change: bool = True,
    family: str = "quasipoisson",
    se: str = "model",
    maxlags: int | None = None,
    control: str | None = None,
    alpha: float = 0.05,
    reference: str = "normal",
) -> ITSResult:
    """Fit the segmented regression of the module docstring and tabulate its terms.

    ``count``: outcome column (counts for poisson/quasipoisson, any real for gaussian).
    ``time``: numeric, equally spaced time column. ``interruption``: time of the first
    post-intervention observation :math:`t_0`. ``offset``: exposure column (log taken here).
    ``season``: column giving the seasonal position (e.g. calendar month), default ``time``.
    ``control``: column labelling rows ``"treated"``/``"control"`` (or 1/0, True/False with
    1 = treated) for a controlled ITS. ``maxlags``: Newey-West truncation lag (default
    ``newey_west_maxlags``). ``reference``: ``normal`` (Wald) or ``t`` (n - p df) for p and the
    intervals. Raises :class:`QialignError` on bad input (missing/non-finite columns, negative
    counts, non-positive exposure, interruption not inside the observed times, duplicated or
    unequally spaced times for Newey-West, an unidentifiable design).
    """
    _check_arguments(df, family, se, alpha, offset, reference)
    counts = family != "gaussian"
    freqs = _frequencies(harmonics)
    data = _series(df, count, time, offset, season, control, interruption, counts)
    times = np.sort(data["_t"].unique())
    maxlags = _newey_west_lags(times, time, maxlags) if se == "newey-west" else None
    X, effect_terms, seasonal = _design(data, interruption, freqs, period, slope_change, control is not None)
    n, p = X.shape
    _check_identified(X)
    y = data["_y"].to_numpy(float)
    off = np.log(data["_e"].to_numpy(float)) if offset is not None else None
    res = _fit_glm(y, X, off, family, se, maxlags, np.searchsorted(times, data["_t"].to_numpy()), control)
    # Pearson dispersion (R's summary(quasipoisson fit)$dispersion), whatever the SE kind.
    mu = np.asarray(res.fittedvalues, dtype=float)
    var = mu if counts else np.ones_like(mu)
    dispersion = float(np.sum((y - mu) ** 2 / var) / (n - p))
    params = np.asarray(res.params, dtype=float)
    if se == "model":
        # phi * (X^T W X)^{-1} with W and phi both at the converged estimates (statsmodels' and
        # R's IRLS reuse the last iteration's weights, which differ from these by ~1e-7).
        Xa = X.to_numpy(float)
        info = Xa.T @ (var[:, None] * Xa)
        cov = (1.0 if family == "poisson" else dispersion) * np.linalg.inv(info)
        bse = np.sqrt(np.diag(cov))
    else:
        bse = np.asarray(res.bse, dtype=float)
    return ITSResult(
        terms=_term_table(
            list(X.columns), params, bse, alpha, counts, n - p if reference == "t" else math.inf
        ),  # fmt: skip
        curves=_curves(data, X, params, off, seasonal, effect_terms, counts, control is not None),
        family=family,
        se=se,
        dispersion=dispersion,
        maxlags=maxlags,
        nobs=n,
        df_resid=n - p,
        alpha=alpha,
        effect_terms=effect_terms,
        design=X,
        model_result=res,
    )


def _check_arguments(df, family: str, se: str, alpha: float, offset, reference: str) -> None:
    checks = (("family", family, ITS_FAMILIES), ("se", se, SE_KINDS), ("reference", reference, REFERENCES))
    for name, value, allowed in checks:
        if value not in allowed:
            raise QialignError(f"ITS: {name} must be one of {list(allowed)}, got {value!r}")
    if not 0 < alpha < 1:
        raise QialignError(f"ITS: alpha must be in (0, 1), got {alpha!r}")
    if not isinstance(df, pd.DataFrame):
        raise QialignError("ITS: df must be a pandas DataFrame")
    if offset is not None and family == "gaussian":
        raise QialignError("ITS: an exposure offset needs a log-link count family (poisson/quasipoisson)")


def _series(df, count, time, offset, season, control, interruption, counts: bool) -> pd.DataFrame:
    """The checked series: _y outcome, _t time, _s seasonal position, _e exposure, _g treated (1)
    or control (0); sorted by group and time."""
    needed = [count, time] + [c for c in (offset, season, control) if c is not None]
    missing = [c for c in dict.fromkeys(needed) if c not in df.columns]
    if missing:
        raise QialignError(f"ITS: column(s) {missing} not in the data (columns: {list(df.columns)})")
    if len(df) == 0:
        raise QialignError("ITS: the data have no rows")
    data = pd.DataFrame({"_y": _numeric(df, count), "_t": _numeric(df, time)})
    data["_s"] = _numeric(df, season) if season is not None else data["_t"]
    if offset is not None:
        data["_e"] = _numeric(df, offset)
        if (data["_e"] <= 0).any():
            raise QialignError(f"ITS: exposure column {offset!r} must be > 0 (its log is the offset)")
    if counts and (data["_y"] < 0).any():
        bad = [int(i) + 1 for i in np.flatnonzero(data["_y"].to_numpy() < 0)[:5]]
        raise QialignError(f"ITS: counts in {count!r} must be >= 0 (negative in row(s) {bad})")
    data["_g"] = _treated_indicator(df[control], control) if control is not None else 1.0
    if not np.isfinite(interruption):
        raise QialignError(f"ITS: interruption must be a finite time, got {interruption!r}")
    for g, sub in data.groupby("_g"):
        label = "" if control is None else (" of the treated series" if g == 1 else " of the control series")
        t = sub["_t"]
        if t.duplicated().any():
            raise QialignError(f"ITS: duplicated time values in {time!r}{label}; one row per time point")
        if not (t.min() < interruption <= t.max()):
            raise QialignError(
                f"ITS: interruption {interruption!r} is outside the observed times{label} "
                f"[{t.min()}, {t.max()}]; it must be the time of the first post-intervention "
                "observation, with at least one observation before it"
            )
    return data.sort_values(["_g", "_t"], kind="stable").reset_index(drop=True)


def _newey_west_lags(times: np.ndarray, time: str, maxlags) -> int:
    """The checked Newey-West truncation lag (default ``newey_west_maxlags``)."""
    if len(times) > 2 and not np.allclose(np.diff(times), times[1] - times[0], rtol=1e-9, atol=1e-12):
        why = "(lags are counted in observations); fill gaps or use se='model'"
        raise QialignError(f"ITS: Newey-West needs equally spaced time points in {time!r} {why}")
    if maxlags is None:
        maxlags = newey_west_maxlags(len(times))
    if int(maxlags) != maxlags or not 0 <= maxlags < len(times):
        raise QialignError(f"ITS: maxlags must be an integer in [0, {len(times) - 1}], got {maxlags!r}")
    return int(maxlags)


def _check_identified(X: pd.DataFrame) -> None:
    n, p = X.shape
    if n <= p:
        raise QialignError(f"ITS: {n} observations cannot identify {p} coefficients")
    if np.linalg.matrix_rank(X.to_numpy()) < p:
        raise QialignError(
            "ITS: the design is rank deficient: check that there are enough observations before and "
            "after the interruption, and that the harmonics are below half the period"
        )


def _fit_glm(y, X: pd.DataFrame, off, family: str, se: str, maxlags, tcode, control):
    """The statsmodels GLM fit (Pearson scale unless poisson; HAC or grouped HAC for Newey-West)."""
    sm_family = statsmodels_family("gaussian" if family == "gaussian" else "poisson")
    model = sm.GLM(y, X.to_numpy(), family=sm_family, offset=off)
    fit_kw: dict = {"scale": 1.0 if family == "poisson" else "X2", "tol": 1e-10}
    if se == "newey-west":
        if control is None:
            fit_kw.update(cov_type="HAC", cov_kwds={"maxlags": maxlags, "use_correction": False})
        else:
            fit_kw.update(
                cov_type="hac-groupsum",
                cov_kwds={"time": tcode, "maxlags": maxlags, "use_correction": False},
            )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            res = model.fit(**fit_kw)
        except (np.linalg.LinAlgError, ValueError, FloatingPointError) as exc:
            raise QialignError(f"ITS: the GLM fit failed: {exc}") from exc
    if not getattr(res, "converged", True) or any("converge" in str(w.message).lower() for w in caught):
        raise QialignError("ITS: the GLM fit did not converge")
    return res


def _frequencies(harmonics) -> tuple[int, ...]:
    if isinstance(harmonics, (int, np.integer)) and not isinstance(harmonics, bool):
        if harmonics < 0:
            raise QialignError(f"ITS: harmonics must be >= 0, got {harmonics}")
        return tuple(range(1, int(harmonics) + 1))
    try:
        freqs = tuple(harmonics)
    except TypeError:
        raise QialignError(
            f"ITS: harmonics must be an int or a sequence of ints, got {harmonics!r}"
        ) from None
    if any(isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1 for k in freqs):
        raise QialignError(f"ITS: harmonic frequencies must be positive integers, got {freqs!r}")
    if len(set(freqs)) != len(freqs):
        raise QialignError(f"ITS: harmonic frequencies must be distinct, got {freqs!r}")
    return tuple(int(k) for k in freqs)


def _numeric(df: pd.DataFrame, col: str) -> pd.Series:
    try:
        s = pd.to_numeric(df[col], errors="raise").astype(float)
    except (TypeError, ValueError):
        raise QialignError(f"ITS: column {col!r} must be numeric") from None
    if not np.all(np.isfinite(s.to_numpy())):
        bad = [int(i) + 1 for i in np.flatnonzero(~np.isfinite(s.to_numpy()))[:5]]
        raise QialignError(f"ITS: column {col!r} has missing or non-finite values (row(s) {bad})")
    return s.reset_index(drop=True)


def _treated_indicator(col: pd.Series, name: str) -> np.ndarray:
    vals = col.reset_index(drop=True)
    if vals.isna().any():
        raise QialignError(f"ITS: control column {name!r} has missing values")
    if vals.map(lambda v: isinstance(v, str)).all():
        low = vals.str.strip().str.lower()
        unknown = sorted(set(low) - _TREATED - _CONTROL)
        if unknown:
            raise QialignError(
                f"ITS: control column {name!r}: 'treated' or 'control' expected, got {unknown}"
            )
        g = low.isin(_TREATED).to_numpy(float)
    else:
        try:
            g = vals.astype(float).to_numpy()
        except (TypeError, ValueError):
            raise QialignError(f"ITS: control column {name!r} must be 'treated'/'control' or 1/0") from None
        if not np.isin(g, (0.0, 1.0)).all():
            raise QialignError(f"ITS: control column {name!r} must be 1 (treated) or 0 (control)")
    if len(np.unique(g)) != 2:
        raise QialignError(f"ITS: control column {name!r} needs both a treated and a control series")
    return g


def _design(data, t0, freqs, period, slope_change, controlled):
    t = data["_t"].to_numpy(float)
    post = (t >= t0).astype(float)
    cols = {"intercept": np.ones_like(t), "time": t, "level": post}
    if slope_change:
        cols["slope"] = (t - t0) * post
    base = list(cols)
    if controlled:
        g = data["_g"].to_numpy(float)
        for b in base:
            cols["group" if b == "intercept" else f"group:{b}"] = g * cols[b]
    X = pd.DataFrame(cols)
    seasonal: list[str] = []
    if freqs:
        F = fourier_terms(data["_s"], freqs, period)
        seasonal = list(F.columns)
        X = pd.concat([X, F], axis=1)
    effects = ("group:level", "group:slope") if controlled else ("level", "slope")
    effects = tuple(e for e in effects if e in X.columns)
    return X, effects, seasonal


def _term_table(names, params, bse, alpha, counts, df: float) -> pd.DataFrame:
    """Terms with p and 1 - alpha intervals on a t(df) reference (normal when df is infinite)."""
    ref = stats.norm if np.isinf(df) else stats.t(df)
    q = ref.ppf(1 - alpha / 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        statistic = params / bse
    lo, hi = params - q * bse, params + q * bse
    out = pd.DataFrame(
        {
            "term": names,
            "estimate": params,
            "se": bse,
            "statistic": statistic,
            "p": 2 * ref.sf(np.abs(statistic)),
            "ci_low": lo,
            "ci_high": hi,
            "ratio": np.exp(params) if counts else np.nan,
            "ratio_low": np.exp(lo) if counts else np.nan,
            "ratio_high": np.exp(hi) if counts else np.nan,
        }
    )
    return out[list(TERM_COLUMNS)]


def _curves(data, X, params, off, seasonal, effect_terms, counts, controlled) -> pd.DataFrame:
    Xa = X.to_numpy(float)
    Xd = X.copy()
    for c in seasonal:
        Xd[c] = X[c].mean()
    Xc = Xd.copy()
    for c in effect_terms:
        Xc[c] = 0.0
    o = off if off is not None else 0.0
    inv = np.exp if counts else (lambda v: v)
    out = pd.DataFrame({"time": data["_t"].to_numpy()})
    if controlled:
        out["group"] = np.where(data["_g"].to_numpy() == 1, "treated", "control")
    out["observed"] = data["_y"].to_numpy()
    out["fitted"] = inv(Xa @ params + o)
    out["trend"] = inv(Xd.to_numpy(float) @ params + o)
    out["counterfactual"] = inv(Xc.to_numpy(float) @ params + o)
    if off is not None:
        out["exposure"] = data["_e"].to_numpy()
    return out


def its_cross_check(
    rows: pd.DataFrame,
    family: str,
    *,
    harmonics: int = 0,
    period: float = 12,
    slope_change: bool = False,
    interval: float = DEFAULT_INTERVAL_PROB,
) -> pd.DataFrame:
    """Cross-check rows (``qialign.frequentist.COLUMNS``) of an interrupted time series.

    The prepared rows (``period, treated, y`` and ``exposure`` for counts) are summed per period
    over the series (counts) or averaged over its individuals (gaussian; cell means weighted by
    ``n``), separately for clusters that never start (a control series: controlled ITS, the effect
    is the difference in change), then fitted by :func:`segmented_regression`
    with the Bayesian model's trend terms: quasi-Poisson (counts, log exposure offset) or OLS
    (gaussian), model and Newey-West SEs, ``interval`` intervals on t(n - p) (``df``).
    ``treatment_effect``: the level change at the start; ``slope_change``: the change in slope.
    """
    fam = FAMILIES[family]
    counts = fam.kind == "count"
    if not counts and family != "gaussian":
        note = f"segmented regression covers count and gaussian outcomes, not {family}"
        row = ["its_segmented", "treatment_effect", fam.link_scale, *[np.nan] * 5, note]
        return pd.DataFrame([row], columns=COLUMNS)
    # gaussian: the mean over the series' individuals (cells: their means weighted by n)
    n = rows["n"].astype(float) if "n" in rows.columns else pd.Series(1.0, index=rows.index)
    rows = rows.assign(y=rows["y"] * n, n=n) if not counts else rows
    agg = {"y": "sum", "exposure": "sum"} if counts else {"y": "sum", "n": "sum"}
    # a controlled ITS: clusters that never start form the control series
    ever = rows.groupby("cluster")["treated"].transform("max").astype(int)
    controlled = bool((ever == 0).any())
    keys = ["period", "group"] if controlled else ["period"]
    series = rows.assign(group=ever).groupby(keys, as_index=False).agg({**agg, "treated": "max"})
    if not counts:
        series["y"] = series["y"] / series["n"]
    start = float(series.loc[series["treated"] == 1, "period"].min())
    method = "its_quasipoisson" if counts else "its_ols"
    link, natural = fam.link_scale, fam.natural_scale
    out = []
    for se, suffix in (("model", ""), ("newey-west", "_newey_west")):
        res = segmented_regression(
            series,
            count="y",
            time="period",
            interruption=start,
            offset="exposure" if counts else None,
            harmonics=harmonics,
            period=period,
            slope_change=slope_change,
            family="quasipoisson" if counts else "gaussian",
            se=se,
            control="group" if controlled else None,
            alpha=1 - interval,
            reference="t",
        )
        terms = res.terms.set_index("term")
        what = "treated vs control series (difference in change)" if controlled else "one series"
        lag = f"; Newey-West lag {res.maxlags}" if suffix else ""
        note = f"{what}, {series['period'].nunique()} periods{lag}"
        pre = "group:" if controlled else ""
        for term, name in ((pre + "level", "treatment_effect"), (pre + "slope", "slope_change")):
            if term not in terms.index:
                continue
            r = terms.loc[term]
            est, lo, hi = float(r["estimate"]), float(r["ci_low"]), float(r["ci_high"])
            (b, lo_n, hi_n), m = fam.natural([est, lo, hi]), method + suffix
            out.append([m, name, link, est, float(r["se"]), lo, hi, res.df_resid, note])
            out.append([m, f"{name}_natural", natural, b, np.nan, lo_n, hi_n, res.df_resid, note])
    return pd.DataFrame(out, columns=COLUMNS)
