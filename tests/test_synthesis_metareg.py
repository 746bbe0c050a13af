"""The REML / Knapp-Hartung meta-regression against metafor's published BCG example."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from qialign.synthesis.metareg import meta_regression

BCG = Path(__file__).parent / "data" / "metafor_bcg.csv"


def _bcg():
    d = pd.read_csv(BCG)
    yi = np.log((d.tpos / (d.tpos + d.tneg)) / (d.cpos / (d.cpos + d.cneg)))
    vi = 1 / d.tpos - 1 / (d.tpos + d.tneg) + 1 / d.cpos - 1 / (d.cpos + d.cneg)
    return yi.to_numpy(), vi.to_numpy(), d.ablat.to_numpy(float)


def test_meta_regression_reproduces_metafor_bcg_with_latitude():
    yi, vi, ablat = _bcg()
    assert yi[0] == pytest.approx(-0.8893, abs=5e-5) and vi[0] == pytest.approx(0.3256, abs=5e-5)
    fit = meta_regression(yi, vi, np.column_stack([np.ones_like(yi), ablat]))
    # exact REML optimum 0.076348 (Fisher scoring to 1e-15 agrees); metafor stops its Fisher scoring
    # at a change below 1e-5 and prints 0.0764
    assert fit.tau2 == pytest.approx(0.0764, abs=1e-4)
    assert fit.coef == pytest.approx([0.2515, -0.0291], abs=5e-5)
    assert fit.se == pytest.approx([0.2839, 0.0082], abs=5e-5)
    assert fit.t[1] == pytest.approx(-3.5483, abs=5e-4)
    assert fit.df == 11
    lo, hi = fit.interval(0.95)
    assert [lo[0], hi[0], lo[1], hi[1]] == pytest.approx([-0.3735, 0.8764, -0.0472, -0.0111], abs=1e-4)
    assert fit.qe == pytest.approx(30.7331, abs=5e-5)
    assert fit.r2 == pytest.approx(0.7562, abs=1e-4)
    assert fit.f == pytest.approx(12.5905, abs=5e-4)


def test_intercept_only_model_reproduces_metafor_bcg():
    yi, vi, _ = _bcg()
    fit = meta_regression(yi, vi, np.ones((len(yi), 1)))
    assert fit.tau2 == pytest.approx(0.3132, abs=5e-5)
    assert fit.coef[0] == pytest.approx(-0.7145, abs=5e-5)
    assert fit.se[0] == pytest.approx(0.1808, abs=5e-5)


def test_homogeneous_estimates_give_zero_tau2():
    fit = meta_regression([0.1, 0.1, 0.1, 0.1], [0.04, 0.05, 0.06, 0.07], np.ones((4, 1)))
    assert fit.tau2 == 0.0
    assert fit.coef[0] == pytest.approx(0.1, abs=1e-12)
