"""Tests of qialign.power: published power values, closed forms = GLS, interaction, tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.special import ndtr, ndtri, stdtr, stdtrit

from qialign.power import (
    COLUMNS,
    VarianceComponents,
    binary_variance,
    cluster_covariance,
    design_matrix,
    hooper_stepped_wedge_variance,
    hussey_hughes_variance,
    incomplete_window,
    interaction_variance,
    kasza_variance,
    li_decay_variance,
    normal_scores,
    parallel,
    parallel_baseline,
    power,
    power_table,
    sample_size,
    stepped_wedge,
    treatment_variance,
)


def _vc(tau=0.0, sigma=1.0, gamma=0.0, psi=0.0, ar_cluster=1.0, ar_subject=1.0):
    """SteppedPower's standard deviations (tau, sigma, gamma, psi; AR) as our variances."""
    return VarianceComponents(
        tau2=tau**2,
        gamma2=gamma**2,
        psi2=psi**2,
        sigma2=sigma**2,
        cluster_decay=ar_cluster,
        individual_decay=ar_subject,
    )


# ------------------------------------------------------------------------ published values
#
# SteppedPower 0.3.5 (Mildenberger & Marini), vignette "Getting Started with SteppedPower"
# (vignettes/Getting_Started.Rmd, rendered inst/doc/Getting_Started.html dated 2024-04-29).
# glsPower(mu0, mu1, Cl, sigma, tau, gamma, psi, AR, N, ...): Cl = clusters per sequence
# (stepped wedge: timepoints = length(Cl) + 1), sigma/tau/gamma/psi are standard deviations of
# the residual, cluster, cluster-period and subject effects (psi > 0: closed cohort, the cluster
# mean gets psi^2 / N), AR = lag-1 correlation of (cluster, treatment, subject) effects (a
# scalar applies to all), N = subjects per cluster-period, factor period effects, power =
# tTestPwr(df = Inf): Phi(z - q) + Phi(-z - q), i.e. normal with the opposite tail. Printed
# values: `$power` / `[1]` shows 7 significant digits, print.glsPower rounds to 4 decimals.
SIX_BY_FOUR = dict(mu0=0.05, mu1=0.032, N=100, tau=0.025, sigma=np.sqrt(0.041 * 0.959), gamma=0.01, psi=0.1)
_P = SIX_BY_FOUR
STEPPEDPOWER_REFERENCE = [
    # (section / call, treatment matrix, m, effect, components, published power, printed decimals)
    (
        "5.1 glsPower(Cl=c(10,10), mu0=0, mu1=1.2, sigma=1, tau=0, N=1, dsntype='parallel', "
        "timepoints=1)$power",
        parallel(10, 1), 1, 1.2, _vc(tau=0, sigma=1), 0.7652593, 7,
    ),
    (
        "5.2 glsPower(Cl=c(10,10), timepoints=5, mu0=0, mu1=.25, sigma=.5, dsntype='parallel')",
        parallel(10, 5), 1, 0.25, _vc(tau=0, sigma=0.5), 0.7054, 4,
    ),
    (
        "5.2 glsPower(Cl=c(10,10), timepoints=5, mu0=0, mu1=.25, sigma=.5, tau=.2, "
        "dsntype='parallel')",
        parallel(10, 5), 1, 0.25, _vc(tau=0.2, sigma=0.5), 0.4616, 4,
    ),
    (
        "5.6 glsPower(Cl=rep(2,4), sigma=2, tau=.6, mu0=0, mu1=.5, N=80, incomplete=2)",
        incomplete_window(stepped_wedge(4, 2), 2, 2), 80, 0.5, _vc(tau=0.6, sigma=2), 0.8221, 4,
    ),
    (
        "5.8 Closed1 <- glsPower(mu0=0, mu1=5, Cl=rep(3,3), sigma=5, tau=1, psi=3, N=3); "
        "Closed1$power",
        stepped_wedge(3, 3), 3, 5.0, _vc(tau=1, sigma=5, psi=3), 0.8524223, 7,
    ),
    (
        "5.9 Open1 <- glsPower(mu0=0, mu1=5, Cl=rep(3,3), sigma=5, tau=1, psi=3, AR=c(1,1,.75), "
        "N=3); Open1$power",
        stepped_wedge(3, 3), 3, 5.0, _vc(tau=1, sigma=5, psi=3, ar_subject=0.75), 0.8284796, 7,
    ),
    (
        "5.10.1 tTestPwr(mu0-mu1, sqrt(VarClosed_Li(trtMat, tau, psi, N, AR=.5)), Inf) "
        "= glsPower(Cl=rep(6,4), AR=.5, sigma=0, tau, psi, N, INDIV_LVL=TRUE)",
        stepped_wedge(4, 6), _P["N"], _P["mu0"] - _P["mu1"],
        _vc(tau=_P["tau"], sigma=0, psi=_P["psi"], ar_cluster=0.5, ar_subject=0.5), 0.7870855, 7,
    ),
    (
        "5.10.2 VarClosed_Kasza(chi=0) = glsPower(Cl=rep(6,4), sigma, tau, gamma, psi, N)",
        stepped_wedge(4, 6), _P["N"], _P["mu0"] - _P["mu1"],
        _vc(tau=_P["tau"], sigma=_P["sigma"], gamma=_P["gamma"], psi=_P["psi"]), 0.7145816, 7,
    ),
    (
        "5.10.2 VarClosed_Kasza(chi=1) = glsPower(gamma=sqrt(gamma^2+psi^2/N), psi=0)",
        stepped_wedge(4, 6), _P["N"], _P["mu0"] - _P["mu1"],
        _vc(tau=_P["tau"], sigma=_P["sigma"], gamma=np.sqrt(_P["gamma"] ** 2 + _P["psi"] ** 2 / _P["N"])),
        0.6451082, 7,
    ),
    (
        "5.10.2 VarClosed_Kasza(chi=.5) = glsPower(gamma=sqrt(gamma^2+chi psi^2/N), "
        "psi=sqrt(1-chi) psi)",
        stepped_wedge(4, 6), _P["N"], _P["mu0"] - _P["mu1"],
        _vc(tau=_P["tau"], sigma=_P["sigma"], psi=np.sqrt(0.5) * _P["psi"],
            gamma=np.sqrt(_P["gamma"] ** 2 + 0.5 * _P["psi"] ** 2 / _P["N"])),
        0.6778561, 7,
    ),
]  # fmt: skip


@pytest.mark.parametrize(
    "call, treatment, m, effect, vc, published, decimals",
    STEPPEDPOWER_REFERENCE,
    ids=[r[0].split(" ")[0] + f"-{i}" for i, r in enumerate(STEPPEDPOWER_REFERENCE)],
)
def test_steppedpower_vignette_power(call, treatment, m, effect, vc, published, decimals):
    ours = power(effect, np.sqrt(treatment_variance(treatment, m, vc)))
    assert abs(ours - published) <= 0.5 * 10**-decimals + 1e-12, (call, ours, published)


def test_steppedpower_incomplete_matrix_is_the_vignettes():
    """Section 5.6 prints the observed cells of incomplete=2 per sequence (1 = observed)."""
    published = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 0], [0, 1, 1, 1, 1], [0, 0, 1, 1, 1]], dtype=bool)
    observed = ~np.isnan(incomplete_window(stepped_wedge(4, 2), 2, 2))
    np.testing.assert_array_equal(observed, np.repeat(published, 2, axis=0))


def test_steppedpower_sample_size():
    """Section 4: glsPower(Cl=c(3,3,3), mu0=0, mu1=.2, sigma=1, tau=0, power=.8) prints
    'Power = 0.8074' and 'Needed N per cluster per period = 50'."""
    row = sample_size("stepped_wedge", effect=0.2, solve_for="m", clusters=9, periods=4, icc=0.0)
    assert row.loc[0, "m"] == 50
    assert round(row.loc[0, "power"], 4) == 0.8074
    below = power(0.2, np.sqrt(treatment_variance(stepped_wedge(3, 3), 49, _vc(sigma=1))))
    assert below < 0.8


def test_clusterpower_hooper_example():
    """clusterPower 0.7.0, man/cpa.sw.normal.Rd example (Hooper et al. 2016 design effect):
    cpa.sw.normal(nsubjects=50, ntimes=5, d=1.5, ICC=0.2, rho_c=0.80, rho_s=0, vart=16) gives
    nclusters = 1.288772 clusters per sequence at power 0.80 (normal, no opposite tail).

    The published number is a uniroot root with tol = .Machine$double.eps^0.25; R's zeroin stops
    within tol / 2 of the root, so that (not a loosened 1e-4) is the check. The exact root comes
    from GLS: Var is proportional to 1/c.
    """
    vc = VarianceComponents.from_correlations(icc=0.2, cac=0.8, iac=0.0, total_variance=16)
    var_one = treatment_variance(stepped_wedge(5, 1), 50, vc)
    z = ndtri(0.975) + ndtri(0.80)
    root = var_one * (z / 1.5) ** 2
    assert abs(root - 1.288772) <= np.finfo(float).eps ** 0.25 / 2
    assert power(1.5, np.sqrt(var_one / root), opposite_tail=False) == pytest.approx(0.8, abs=1e-12)


# ------------------------------------------------------------------- closed forms vs GLS

BINARY_DESIGNS = {
    "sw_4x6": stepped_wedge(4, 6),
    "sw_unequal": stepped_wedge([2, 3, 1, 2]),
    "sw_empty_step": stepped_wedge([1, 0, 2]),
    "sw_extended": stepped_wedge(4, 2, baseline_periods=2, extra_periods=1),
    "parallel": parallel((3, 4), 4),
    "parallel_baseline": parallel_baseline(3, 2, 3),
    "crossover": np.array([[0, 1, 0, 1], [1, 0, 1, 0]] * 3, dtype=float),
}
STEPPED = ("sw_4x6", "sw_unequal", "sw_empty_step", "sw_extended")


@pytest.mark.parametrize("name", BINARY_DESIGNS)
def test_hussey_hughes_equals_gls(name):
    x = BINARY_DESIGNS[name]
    gls = treatment_variance(x, 7, VarianceComponents(tau2=0.3, sigma2=2.0))
    assert hussey_hughes_variance(x, 7, sigma2=2.0, tau2=0.3) == pytest.approx(gls, rel=1e-10)


@pytest.mark.parametrize("name", BINARY_DESIGNS)
@pytest.mark.parametrize("chi", [0.0, 0.3, 1.0])
def test_kasza_block_exchangeable_equals_gls(name, chi):
    x, m = BINARY_DESIGNS[name], 7
    tau2, gamma2, psi2, sigma2 = 0.3, 0.1, 0.5, 2.0
    # attrition chi moves chi psi2/m of the subject effect into the cluster-period term
    vc = VarianceComponents(tau2, gamma2=gamma2 + chi * psi2 / m, psi2=(1 - chi) * psi2, sigma2=sigma2)
    closed = kasza_variance(x, m, tau2, gamma2, psi2, sigma2, attrition=chi)
    assert closed == pytest.approx(treatment_variance(x, m, vc), rel=1e-10)


@pytest.mark.parametrize("name", STEPPED)
@pytest.mark.parametrize("r", [0.2, 0.6, 0.95])
def test_li_proportional_decay_equals_gls(name, r):
    x, m = BINARY_DESIGNS[name], 7
    vc = VarianceComponents(0.3, psi2=0.5, sigma2=0.0, cluster_decay=r, individual_decay=r)
    assert li_decay_variance(x, m, 0.3, 0.5, r) == pytest.approx(treatment_variance(x, m, vc), rel=1e-10)


HOOPER_CASES = [(5, 1, 50, 0.2, 0.8, 0.0), (3, 4, 10, 0.05, 1.0, 0.0), (4, 2, 25, 0.1, 0.6, 0.4),
                (6, 3, 5, 0.3, 0.9, 0.7)]  # fmt: skip


@pytest.mark.parametrize("k, c, m, icc, cac, iac", HOOPER_CASES)
def test_hooper_stepped_wedge_equals_gls(k, c, m, icc, cac, iac):
    vc = VarianceComponents.from_correlations(icc, cac, iac, total_variance=3.0)
    gls = treatment_variance(stepped_wedge(k, c), m, vc)
    closed = hooper_stepped_wedge_variance(k, c, m, icc, cac, iac, total_variance=3.0)
    assert closed == pytest.approx(gls, rel=1e-10)


def test_closed_forms_refuse_designs_they_do_not_cover():
    with pytest.raises(ValueError, match="0/1"):
        hussey_hughes_variance(stepped_wedge(3, 1, ramp=(0.5,)), 10, 1.0, 0.1)
    with pytest.raises(ValueError, match="0/1"):
        kasza_variance(incomplete_window(stepped_wedge(4, 1), 1, 1), 10, 0.1)
    with pytest.raises(ValueError, match="stepped wedge"):
        li_decay_variance(parallel(3, 4), 10, 0.1, 0.2, 0.5)


# ---------------------------------------------------------------------------- GLS behaviour


def test_decay_one_is_exchangeable_and_decay_loses_information():
    x = stepped_wedge(4, 3)
    exch = treatment_variance(x, 20, VarianceComponents.from_correlations(0.05))
    assert treatment_variance(
        x, 20, VarianceComponents.from_correlations(0.05, cluster_decay=1.0)
    ) == pytest.approx(exch, rel=1e-12)
    decayed = [treatment_variance(x, 20, VarianceComponents.from_correlations(0.05, cluster_decay=r))
               for r in (0.95, 0.8, 0.5)]  # fmt: skip
    assert exch < decayed[0] < decayed[1] < decayed[2]


def test_unobserved_cells_are_dropped_and_confounding_is_infinite():
    x = stepped_wedge(4, 2)
    vc = VarianceComponents(0.2, gamma2=0.05, sigma2=1.0)
    window = incomplete_window(x, 1, 1)
    kept_only = np.where(np.isnan(window), np.nan, x)
    assert treatment_variance(window, 10, vc) == treatment_variance(kept_only, 10, vc)
    # a period nobody observes is simply absent
    padded = np.hstack([x, np.full((x.shape[0], 1), np.nan)])
    assert treatment_variance(padded, 10, vc) == pytest.approx(treatment_variance(x, 10, vc), rel=1e-12)
    # everyone switches together: treatment is confounded with period
    assert treatment_variance(np.array([[0, 1.0], [0, 1.0]]), 10, vc) == np.inf
    assert power(0.5, np.inf) == pytest.approx(0.05)


def test_m_per_cell_and_cohort_needs_constant_m():
    x = stepped_wedge(3, 1)
    vc = VarianceComponents(0.1, sigma2=1.0)
    assert treatment_variance(x, np.full(x.shape, 12.0), vc) == treatment_variance(x, 12, vc)
    assert treatment_variance(x, [12, 12, 12], vc) == treatment_variance(x, 12, vc)
    bigger = np.full(x.shape, 12.0)
    bigger[0, 0] = 40
    assert treatment_variance(x, bigger, vc) < treatment_variance(x, 12, vc)
    with pytest.raises(ValueError, match="same m"):
        treatment_variance(x, bigger, VarianceComponents(0.1, psi2=0.3, sigma2=1.0))


def test_cluster_covariance_matches_correlation_definitions():
    vc = VarianceComponents.from_correlations(icc=0.1, cac=0.6, iac=0.5, total_variance=2.0)
    cov = cluster_covariance(vc, [1, 1, 1])  # m = 1: covariance of single subjects
    corr = cov / cov[0, 0]
    assert cov[0, 0] == pytest.approx(2.0)
    # Hooper et al. 2016: same subject across periods ICC CAC + (1 - ICC) IAC
    assert corr[0, 1] == pytest.approx(0.1 * 0.6 + 0.9 * 0.5)
    cov20 = cluster_covariance(vc, np.full(3, 20.0))
    assert cov20[0, 1] / cov20[0, 0] == pytest.approx((20 * 0.1 * 0.6 + 0.9 * 0.5) / (1 + 19 * 0.1))
    decay = cluster_covariance(VarianceComponents.from_correlations(0.1, cluster_decay=0.5), [1, 1, 1])
    assert decay[0, 2] == pytest.approx(0.1 * 0.25)  # Kasza et al. 2019: ICC r^|s-t|


def test_ramp_reduces_power_and_nan_transition_drops_cells():
    vc = VarianceComponents.from_correlations(0.05)
    full = treatment_variance(stepped_wedge(4, 2), 20, vc)
    ramped = stepped_wedge(4, 2, ramp=(0.5,))
    assert ramped[0].tolist() == [0, 0.5, 1, 1, 1]
    assert treatment_variance(ramped, 20, vc) > full
    gap = stepped_wedge(4, 2, ramp=(np.nan,))
    assert np.isnan(gap[0, 1]) and gap[0, 2] == 1
    assert np.isfinite(treatment_variance(gap, 20, vc))


# ----------------------------------------------------------------------------- interaction


@pytest.mark.parametrize(
    "vc",
    [
        VarianceComponents.from_correlations(0.05, cac=0.8),
        VarianceComponents.from_correlations(0.05, cluster_decay=0.7),
        VarianceComponents.from_correlations(0.1, cac=0.9, iac=0.5),
    ],
)
def test_interaction_balanced_x_equals_expected_information_formula(vc):
    x_design = stepped_wedge(4, 4)
    x = np.tile(normal_scores(4), 4)  # standardised within every sequence
    exact = interaction_variance(x_design, 20, vc, x)
    assert exact == pytest.approx(interaction_variance(x_design, 20, vc), rel=1e-10)
    # a moderator lined up with the sequences (grid over all clusters in order) loses information
    assert interaction_variance(x_design, 20, vc, normal_scores(16)) > exact
    # SD 2 instead of 1: variance per unit of x divided by 4
    assert interaction_variance(x_design, 20, vc, 2 * x) == pytest.approx(exact / 4, rel=1e-10)


def test_interaction_in_parallel_equals_treatment_variance():
    """Parallel arms: both effects are between-arm contrasts of (1'V^-1 1)^-1 weighted means."""
    vc = VarianceComponents.from_correlations(0.05, cac=0.7, cluster_decay=0.8)
    x = parallel(6, 4)
    assert interaction_variance(x, 15, vc) == pytest.approx(treatment_variance(x, 15, vc), rel=1e-10)


def test_interaction_constant_moderator_is_not_estimable():
    assert interaction_variance(stepped_wedge(3, 2), 10, VarianceComponents(0.1), np.ones(6)) == np.inf


def test_normal_scores():
    z = normal_scores(7)
    assert z.mean() == pytest.approx(0, abs=1e-15) and z.std() == pytest.approx(1)
    assert np.all(np.diff(z) > 0) and z[3] == 0
    assert normal_scores(1).tolist() == [0.0]


# ------------------------------------------------------------------------ power and designs


def test_power_conventions():
    se = 0.1
    q = 1.959963984540054  # z_0.975
    assert ndtri(0.975) == pytest.approx(q, rel=1e-15)
    assert power(0.3, se, opposite_tail=False) == pytest.approx(ndtr(3 - q), rel=1e-14)
    assert power(-0.3, se) == pytest.approx(ndtr(3 - q) + ndtr(-3 - q), rel=1e-14)
    qt = 2.228138851986274  # t_0.975 on 10 df
    assert stdtrit(10, 0.975) == pytest.approx(qt, rel=1e-12)
    assert power(0.3, se, df=10) == pytest.approx(stdtr(10, 3 - qt) + stdtr(10, -3 - qt), rel=1e-12)
    assert power(0.3, se, df=10) < power(0.3, se)
    assert power(0.0, se) == pytest.approx(0.05)


def test_design_builders():
    sw = stepped_wedge(3, 2)
    assert sw.shape == (6, 4) and sw.sum(axis=1).tolist() == [3, 3, 2, 2, 1, 1]
    assert stepped_wedge([1, 0, 2]).tolist() == [[0, 1, 1, 1], [0, 0, 0, 1], [0, 0, 0, 1]]
    assert stepped_wedge(2, 1, baseline_periods=2, extra_periods=1).tolist() == [
        [0, 0, 1, 1, 1],
        [0, 0, 0, 1, 1],
    ]
    assert parallel((1, 2), 2).tolist() == [[0, 0], [1, 1], [1, 1]]
    assert parallel_baseline(1, 2, 1).tolist() == [[0, 0, 0], [0, 0, 1]]
    assert design_matrix("stepped_wedge", 10, 5).sum(axis=0).tolist() == [0, 3, 6, 8, 10]
    assert design_matrix("parallel", 5, 2).tolist() == [[0, 0], [0, 0], [1, 1], [1, 1], [1, 1]]
    assert design_matrix("parallel_baseline", 4, 3)[:, 0].tolist() == [0, 0, 0, 0]
    with pytest.raises(ValueError, match="unknown design"):
        design_matrix("cluster_crossover", 4, 2)
    with pytest.raises(ValueError, match="2 cluster counts"):
        parallel((1, 2, 3))


def test_variance_components_and_binary_variance():
    vc = VarianceComponents.from_correlations(0.1, cac=0.6, iac=0.5, total_variance=2.0)
    assert (vc.tau2, vc.gamma2, vc.psi2, vc.sigma2) == pytest.approx((0.12, 0.08, 0.9, 0.9))
    assert vc.total == pytest.approx(2.0)
    assert binary_variance(0.05) == pytest.approx(0.0475)
    assert binary_variance(0.05, 0.035) == pytest.approx(0.0425 * 0.9575)  # swCRTdesign: mean prevalence
    with pytest.raises(ValueError):
        VarianceComponents.from_correlations(1.2)
    with pytest.raises(ValueError):
        VarianceComponents(tau2=-1)
    with pytest.raises(ValueError):
        VarianceComponents(tau2=0.1, cluster_decay=1.5)
    with pytest.raises(ValueError):
        binary_variance(1.0)


# --------------------------------------------------------------------- power_table / size


def test_power_table_grid_and_columns():
    table = power_table(
        ["stepped_wedge", "parallel"], [12, 24], 5, 20, icc=0.05, cac=[1.0, 0.8],
        effect=[0.2, 0.3], interaction_effect=0.2,
    )  # fmt: skip
    assert list(table.columns) == COLUMNS
    assert len(table) == 2 * 2 * 2 * 3
    assert set(table["estimand"]) == {"treatment", "interaction"}
    assert (table["method"] == "gls_normal").all()
    one = table.query("design == 'stepped_wedge' and clusters == 12 and cac == 1.0 and effect == 0.2")
    one = one[one["estimand"] == "treatment"].iloc[0]
    vc = VarianceComponents.from_correlations(0.05)
    assert one["se"] == pytest.approx(
        np.sqrt(treatment_variance(design_matrix("stepped_wedge", 12, 5), 20, vc))
    )
    sw = table[
        (table["design"] == "stepped_wedge") & (table["estimand"] == "treatment") & (table["cac"] == 1.0)
    ]
    assert sw.groupby("effect")["power"].apply(lambda p: p.is_monotonic_increasing).all()
    binary = power_table("parallel", 20, 1, 50, icc=0.02, effect=-0.015, prevalence=0.05, df=18)
    assert binary.loc[0, "total_variance"] == pytest.approx(0.0475)
    assert binary.loc[0, "method"] == "gls_t"
    assert isinstance(binary, pd.DataFrame)


def test_sample_size_is_minimal():
    kwargs = dict(effect=0.2, periods=5, m=20, icc=0.05, cac=0.8)
    row = sample_size("stepped_wedge", **kwargs)
    n = row.loc[0, "clusters"]
    assert n % 4 == 0 and row.loc[0, "power"] >= 0.8
    assert power_table("stepped_wedge", n - 4, 5, 20, icc=0.05, cac=0.8, effect=0.2).loc[0, "power"] < 0.8
    inter = sample_size(
        "parallel", estimand="interaction", periods=1, **{k: kwargs[k] for k in ("effect", "m", "icc")}
    )
    assert inter.loc[0, "estimand"] == "interaction" and inter.loc[0, "clusters"] % 2 == 0
    with pytest.raises(ValueError, match="does not reach"):
        sample_size("parallel", effect=1e-4, periods=1, max_value=50)
    with pytest.raises(ValueError, match="needs clusters"):
        sample_size(effect=0.2, solve_for="m")


def test_smallest_reaching_equals_a_linear_scan():
    from qialign.power import smallest_reaching

    for threshold in (1, 2, 3, 7, 64, 65, 1000):
        achieved = lambda n, t=threshold: float(n >= t)  # noqa: E731
        assert smallest_reaching(achieved, 0.5) == threshold
        assert smallest_reaching(achieved, 0.5, start=5) == max(5, threshold)
    with pytest.raises(ValueError, match="no n up to 100"):
        smallest_reaching(lambda n: 0.0, 0.5, limit=100)
