"""The SPC rules (qialign.spc) against published worked examples (tests/data/spc, sources in each
file's header): Anhøj's table of run-chart critical values and Montgomery's p, u and individuals
charts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from qialign import spc

DATA = Path(__file__).parent / "data" / "spc"


def _read(name: str) -> pd.DataFrame:
    return pd.read_csv(DATA / name, comment="#")


def test_run_chart_critical_values_match_anhoej_table():
    table = _read("anhoej_critical_values.csv")
    got = [spc.runs_limits(n) for n in table["useful"]]
    assert [g[0] for g in got] == table["longest_run_max"].tolist()
    assert [g[1] for g in got] == table["crossings_min"].tolist()


def test_runs_and_crossings_are_counted_as_qicharts2_does():
    # 12 points around 5: one on the centre (skipped), sides + + - - - + - - - - - - -> runs 2, 3, 1, 6
    y = [6, 7, 4, 3, 2, 5, 8, 1, 2, 3, 4, 1, 2]
    r = spc.runs_analysis(y, 5.0)
    assert (r.useful, r.longest_run, r.crossings) == (12, 6, 3)
    assert (r.longest_run_max, r.crossings_min) == (7, 3)  # the table's row for 12 points
    assert not r.signal
    shifted = spc.runs_analysis([1, 2, 1, 2, 1, 2, 9, 8, 9, 8, 9, 8, 9, 8], 5.0)
    assert shifted.longest_run == 8 and shifted.long_run and shifted.few_crossings  # 8 > 7, 1 < 4
    assert spc.runs_analysis([np.nan, 5, 5], 5.0).useful == 0


def test_p_chart_reproduces_montgomery_orange_juice_cans():
    d = _read("montgomery_p_chart.csv")
    lim = spc.p_limits(d["nonconforming"], d["n"])
    assert lim.centre == pytest.approx(347 / 1500, abs=1e-12)
    assert lim.centre == pytest.approx(0.2313, abs=5e-5)
    assert lim.upper[0] == pytest.approx(0.4102, abs=5e-5)
    assert lim.lower[0] == pytest.approx(0.0524, abs=5e-5)
    out = lim.outside(d["nonconforming"] / d["n"])
    assert d.loc[out, "sample"].tolist() == [15, 23]
    # the generic entry point (proportions in, totals rebuilt) gives the same limits
    same = spc.limits("p", d["nonconforming"] / d["n"], d["n"], np.ones(len(d), bool))
    np.testing.assert_allclose(same.upper, lim.upper, rtol=0, atol=1e-12)


def test_u_chart_reproduces_montgomery_personal_computers():
    d = _read("montgomery_u_chart.csv")
    lim = spc.u_limits(d["nonconformities"], d["n"])
    assert lim.centre == pytest.approx(1.93, abs=1e-12)
    assert lim.upper[0] == pytest.approx(3.79, abs=5e-3)
    assert lim.lower[0] == pytest.approx(0.07, abs=5e-3)
    assert not lim.outside(d["nonconformities"] / d["n"]).any()


def test_individuals_chart_reproduces_montgomery_loan_costs():
    d = _read("montgomery_individuals.csv")
    lim = spc.xmr_limits(d["cost"])
    assert lim.centre == pytest.approx(300.5, abs=1e-12)
    assert lim.upper == pytest.approx(300.5 + 2.66 * 148 / 19, abs=1e-12)  # MR-bar = 148 / 19
    assert lim.upper == pytest.approx(321.22, abs=0.05)
    assert lim.lower == pytest.approx(279.78, abs=0.05)
    assert not lim.outside(d["cost"]).any()


def test_limits_come_from_the_baseline_only():
    d = _read("montgomery_p_chart.csv")
    base = d["sample"] <= 10
    lim = spc.p_limits(d["nonconforming"], d["n"], base)
    assert lim.centre == pytest.approx(d["nonconforming"][:10].sum() / 500, abs=1e-12)
    with pytest.raises(ValueError, match="two baseline points"):
        spc.xmr_limits([1.0, 2.0, 3.0], [True, False, False])


def test_the_chart_follows_the_family():
    assert spc.chart_for("bernoulli") == spc.chart_for("binomial") == "p"
    assert spc.chart_for("poisson") == spc.chart_for("negative_binomial") == "u"
    assert spc.chart_for("gaussian") == spc.chart_for("lognormal") == "xmr"
