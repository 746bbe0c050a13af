"""The outcome families: one registry of what every part of qialign knows about a family.

Pure python + numpy at import (the report and the CLI import it; scipy's expit on first use);
the statsmodels family of the cross-checks is built on demand by name
(:meth:`Family.statsmodels_family`).

Scales: an effect theta is estimated on the link scale (log-odds, log-rate, mean of log y, or
y's own units for gaussian) and reported on the natural scale, exp(theta) for every family but
gaussian (odds ratio, rate ratio, ratio of geometric means; gaussian: the difference itself).
The marginal scale is that of the standardised absolute effect (risk difference, ...).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


def _expit(x):
    """Inverse logit 1 / (1 + exp(-x)): scipy's ``expit``, imported on first use (this module is
    imported by the report and the CLI); 4.5x faster than exp(-logaddexp(0, -x)) on the estimands'
    draws x cells, full relative precision in both tails."""
    from scipy.special import expit

    return expit(np.asarray(x, dtype=float))


def _identity(x):
    return np.asarray(x, dtype=float)


#: link name -> inverse link g^-1 (numpy)
INVERSE_LINK: dict[str, Callable] = {"identity": _identity, "logit": _expit, "log": np.exp}

#: working families of the GEE / GLM cross-checks (names of statsmodels.genmod.families classes, lower case)
GLM_FAMILIES = ("gaussian", "binomial", "poisson")

KINDS = ("binary", "count", "continuous")


def statsmodels_family(glm_family: str):
    """A statsmodels GLM family instance (canonical link) for a working family name."""
    if glm_family not in GLM_FAMILIES:
        raise ValueError(f"family must be one of {list(GLM_FAMILIES)}, got {glm_family!r}")
    import statsmodels.api as sm

    return getattr(sm.families, glm_family.capitalize())()


@dataclass(frozen=True)
class Family:
    """One outcome family (see the module docstring for the scales)."""

    name: str
    kind: str  # binary | count | continuous
    link: str  # identity | logit | log (lognormal: identity on log y)
    cell_columns: tuple[str, ...]  # sufficient statistics per cell besides n (data.aggregate)
    cell_outcome: str  # the outcome column of a prepared cell (frequentist design, level="cell")
    link_scale: str
    natural_scale: str
    marginal_scale: str
    link_phrase: str  # what a link-scale contrast is, in words
    glm_family: str  # working family of the GEE / GLM cross-checks (GLM_FAMILIES)
    #: level-1 (latent) variance of the ICC when it is a constant (pi^2 / 3 for logit); None when
    #: it comes from the fit (sigma^2, or log(1 + 1/lambda [+ 1/phi]) for counts)
    level1_variance: float | None = None

    @property
    def total_column(self) -> str:
        """The cell statistic that sums the outcome: events, count, or sum of (log) y."""
        return self.cell_columns[0]

    @property
    def exp_natural(self) -> bool:
        """Whether the natural scale is exp of the link scale (every family but gaussian)."""
        return self.name != "gaussian"

    def natural(self, x):
        """Link-scale contrast(s) -> natural scale."""
        return np.exp(x) if self.exp_natural else np.asarray(x, dtype=float)

    def inverse_link(self, x):
        """g^-1 of a linear predictor (lognormal: the mean of log y)."""
        return INVERSE_LINK[self.link](x)

    def statsmodels_family(self):
        return statsmodels_family(self.glm_family)


_BINARY = dict(
    kind="binary",
    link="logit",
    cell_columns=("events",),
    cell_outcome="events",
    link_scale="log-odds",
    natural_scale="odds ratio",
    marginal_scale="risk difference",
    link_phrase="log odds ratio",
    glm_family="binomial",
    level1_variance=float(np.pi**2 / 3),
)
_COUNT = dict(
    kind="count",
    link="log",
    cell_columns=("count", "exposure"),
    cell_outcome="count",
    link_scale="log-rate",
    natural_scale="rate ratio",
    marginal_scale="count per patient difference",
    link_phrase="log rate ratio",
    glm_family="poisson",
)

FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family(
            name="gaussian",
            kind="continuous",
            link="identity",
            cell_columns=("sum", "sumsq"),
            cell_outcome="mean",
            link_scale="mean",
            natural_scale="difference",
            marginal_scale="mean difference",
            link_phrase="mean difference",
            glm_family="gaussian",
        ),
        Family(
            name="lognormal",
            kind="continuous",
            link="identity",
            cell_columns=("sum", "sumsq"),
            cell_outcome="log_mean",
            link_scale="log-mean",
            natural_scale="ratio of geometric means",
            marginal_scale="mean difference",
            link_phrase="log ratio of geometric means",
            glm_family="gaussian",
        ),
        Family(name="bernoulli", **_BINARY),
        Family(name="binomial", **_BINARY),
        Family(name="poisson", **_COUNT),
        Family(name="negative_binomial", **_COUNT),
    )
}


def family(name: str) -> Family:
    """The registry entry; ValueError naming the known families for an unknown name."""
    try:
        return FAMILIES[name]
    except KeyError:
        raise ValueError(f"unknown family {name!r}; known: {', '.join(FAMILIES)}") from None


def of_kind(kind: str) -> tuple[str, ...]:
    """Names of the families of one kind (binary, count, continuous), in registry order."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    return tuple(n for n, f in FAMILIES.items() if f.kind == kind)


#: the families analytic power covers (``qialign.power``: GLS on cluster-period means)
POWER_FAMILIES = (*of_kind("binary"), *of_kind("continuous"))


#: every scale name a family gives an estimand, and the phrase for each link scale
FAMILY_SCALES = tuple(
    dict.fromkeys(s for f in FAMILIES.values() for s in (f.link_scale, f.natural_scale, f.marginal_scale))
)
LINK_PHRASE = {f.link_scale: f.link_phrase for f in FAMILIES.values()}
