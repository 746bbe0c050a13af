"""The likelihood of the observed cell statistics ``y`` given the linear predictor eta per cell.

- binomial/bernoulli: events_c ~ Binomial(n_c, logit^-1 eta_c)  (bernoulli rows: n = 1), as
  log p = events eta - n log(1 + e^eta) + log C(n, events)
- poisson: count_c ~ Poisson(exposure_c exp(eta_c))  (sum of Poissons with a common rate), as
  log p = count m - e^m - log count!, m = eta + log exposure
- negative_binomial (NB2, Var = m + m^2 / shape): count_c ~ NB(mean exposure_c exp(eta_c), shape)
  with shape phi for counts recorded per cell and n_c phi for counts summed from n_c patient rows
  (``design.nb_shape``; exact for iid NB rows of equal exposure: a sum of NB with a common
  p = phi / (phi + m) is NB with shapes added; an approximation when exposures differ in a cell).
- gaussian/lognormal (on y* = standardised y or log y), from sufficient statistics:
  sum_i log N(y_i | m, s) = -n/2 log(2 pi s^2) - (sumsq - 2 m sum + n m^2) / (2 s^2),
  written as a CustomDist observed on the cell sums so that log_likelihood / LOO are per cell.

The binomial and Poisson terms are written out rather than taken from PyMC's distributions, whose
logp checks its parameters (0 <= p <= 1, n >= 0, mu >= 0) in every cell at every evaluation, and
their data-only part log h(y) is model data (``LOG_BASE_DATA``), not three log-gamma functions per
cell at every evaluation. On the 12 x 10 reference trial's 3,984 patient cells (nutpie's path,
data as arguments) logp and gradient took ~210 us with PyMC's Binomial, 104 us written out. The
cells are validated when they are read, and eta is finite by construction.
"""

from __future__ import annotations

import numpy as np
import pymc as pm
import pytensor.tensor as pt
from scipy.special import gammaln

from qialign.families import INVERSE_LINK
from qialign.models.design import Design, nb_shape
from qialign.models.spec import ModelSpec

#: the model data holding the observed cell totals (swapped by ``compiled.with_data``)
OBSERVED_DATA = "y_observed"
#: the model data holding log h(y), the part of a cell's log-likelihood that is a function of the
#: data alone (binomial log C(n, y), Poisson -log y!): data, not computed at every evaluation (three
#: log-gamma functions per cell were 80 of 180 us per logp-and-gradient on 3,984 patient rows)
LOG_BASE_DATA = "y_log_base"


def observed_arrays(family: str, y: np.ndarray, n: np.ndarray) -> dict[str, np.ndarray]:
    """The model data of cell outcomes ``y`` (``n`` patients per cell), by name: what a fit builds
    its likelihood on and what a simulation swaps in (``compiled.with_data(**...)``)."""
    out = {OBSERVED_DATA: y}
    yf, nf = np.asarray(y, float), np.asarray(n, float)
    if family in ("bernoulli", "binomial"):
        out[LOG_BASE_DATA] = gammaln(nf + 1) - gammaln(yf + 1) - gammaln(nf - yf + 1)
    elif family == "poisson":
        out[LOG_BASE_DATA] = -gammaln(yf + 1)
    return out


def _binomial_logp(value, eta, n, log_base):
    """log Binomial(value | n, logit^-1 eta) = value eta - n softplus(eta) + log C(n, value)."""
    return value * eta - n * pt.softplus(eta) + log_base


def binomial_replicates(p, n, rng, size=None) -> np.ndarray:
    """Binomial(n, p) draws; one patient per cell (patient rows): U < p, a uniform per draw (half
    the time of numpy's binomial)."""
    n = np.asarray(n, int)
    if n.size and (n == 1).all():
        shape = np.broadcast_shapes(n.shape, p.shape) if size is None else size
        return (rng.random(shape) < p).astype(np.int64)
    return rng.binomial(n, p, size=size)


def _binomial_random(eta, n, log_base, rng=None, size=None):
    return binomial_replicates(INVERSE_LINK["logit"](eta), n, rng, size)


def _poisson_logp(value, log_mu, log_base):
    """log Poisson(value | e^m) = value m - e^m - log value!."""
    return value * log_mu - pt.exp(log_mu) + log_base


def _poisson_random(log_mu, log_base, rng=None, size=None):
    return rng.poisson(np.exp(log_mu), size=size)


def _ss_normal_logp(value, m, s, n, sumsq):
    """Log-density of n iid N(m, s) draws given their sum (value) and sum of squares."""
    return -0.5 * n * pt.log(2 * np.pi * s**2) - (sumsq - 2 * m * value + n * m**2) / (2 * s**2)


def _ss_normal_random(m, s, n, sumsq, rng=None, size=None):
    """Replicated cell sums: sum of n draws of N(m, s) is N(n m, sqrt(n) s)."""
    return rng.normal(n * m, np.sqrt(n) * s, size=size)


def _observed(d: Design, column: str) -> tuple:
    """The observed cell totals as data (not a constant), so that fits of other data with the same
    structure share one compilation (``qialign.inference.structure_cache``), and log h(y) or None."""
    arrays = {k: pm.Data(k, v, dims="cell") for k, v in observed_arrays(d.family, d.y[column], d.n).items()}
    return arrays[OBSERVED_DATA], arrays.get(LOG_BASE_DATA)


def likelihood_term(d: Design, spec: ModelSpec, pr: dict, eta, n) -> None:
    """The observed cell statistics ``y`` given the linear predictor (module docstring)."""
    fam = spec.family
    if fam in ("bernoulli", "binomial"):
        y, base = _observed(d, "events")
        pm.CustomDist(
            "y", eta, n, base, logp=_binomial_logp, random=_binomial_random, observed=y, dims="cell"
        )
    elif fam == "poisson":
        log_mu = eta + pm.Data("log_exposure", np.log(d.y["exposure"]), dims="cell")
        y, base = _observed(d, "count")
        pm.CustomDist("y", log_mu, base, logp=_poisson_logp, random=_poisson_random, observed=y, dims="cell")
    elif fam == "negative_binomial":
        off = pm.Data("log_exposure", np.log(d.y["exposure"]), dims="cell")
        phi = pm.Exponential("phi", pr["phi_rate"])
        shape = nb_shape(spec, n, phi)
        pm.NegativeBinomial(
            "y", mu=pt.exp(eta + off), alpha=shape, observed=_observed(d, "count")[0], dims="cell"
        )
    else:
        sigma = pm.HalfNormal("sigma", pr["sigma"])
        sumsq = pm.Data("sumsq", d.y["sumsq"], dims="cell")
        pm.CustomDist(
            "y",
            eta,
            sigma,
            n,
            sumsq,
            logp=_ss_normal_logp,
            random=_ss_normal_random,
            observed=_observed(d, "sum")[0],
            dims="cell",
        )
