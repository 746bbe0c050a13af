"""One synthesis from arrays: the Bayesian model, its estimands and the meta-regression beside it.

The meta-regression is the naive cross-check: the trials' posterior means of the ward effects,
with their posterior variances (correlations dropped), regressed on the plug-in standardised
scores (measurement error ignored), REML with Knapp-Hartung (:mod:`qialign.synthesis.metareg`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from qialign.synthesis.estimands import bayesian_estimates, frequentist_estimates
from qialign.synthesis.metareg import MetaRegression, meta_regression
from qialign.synthesis.model import SynthesisData, fit_synthesis, synthesis_data


@dataclass
class SynthesisResult:
    data: SynthesisData
    idata: object
    record: dict
    bayes: pd.DataFrame
    freq: pd.DataFrame
    metareg: MetaRegression


def naive_meta_regression(data: SynthesisData) -> MetaRegression:
    """REML / Knapp-Hartung regression of the stacked ward means on the measured z."""
    y = np.concatenate(data.m)
    v = np.concatenate([np.diag(S) for S in data.S])
    return meta_regression(y, v, np.column_stack([np.ones_like(y), data.a]))


def run_synthesis(m, S, a, se, trial_idx, block: dict, scale_name: str) -> SynthesisResult:
    """Fit and summarise: ``m`` / ``S`` per trial, ``a`` / ``se`` / ``trial_idx`` per ward (stacked
    in trial order), ``block`` the validated synthesis block (with ``better``)."""
    data = synthesis_data(m, S, a, se, trial_idx, block["alignment"])
    idata, record = fit_synthesis(data, block["sampler"], block["seed"])
    bayes = bayesian_estimates(idata["posterior"], data.a, scale_name, block["better"], block)
    fit = naive_meta_regression(data)
    freq = frequentist_estimates(fit, scale_name, float(block["interval"]["prob"]))
    return SynthesisResult(data, idata, record, bayes, freq, fit)
