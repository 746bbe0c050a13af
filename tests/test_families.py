"""The family registry (qialign.families) and the method registry (qialign.methods): the facts
every part reads, checked against the schema and against exact values."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from scipy.special import expit

from qialign.config import trial_schema
from qialign.families import FAMILIES, LINK_PHRASE, family, of_kind
from qialign.frequentist import METHODS as CROSS_CHECK_RUNS
from qialign.methods import METHODS, gee_method, label


def test_schema_family_enum_is_the_registry():
    enum = trial_schema()["properties"]["outcomes"]["additionalProperties"]["properties"]["family"]["enum"]
    assert enum == list(FAMILIES)


def test_exact_entries():
    b = FAMILIES["binomial"]
    assert (b.kind, b.link, b.cell_columns, b.cell_outcome, b.glm_family) == (
        "binary",
        "logit",
        ("events",),
        "events",
        "binomial",
    )
    assert (b.link_scale, b.natural_scale, b.marginal_scale) == ("log-odds", "odds ratio", "risk difference")
    assert b.level1_variance == pytest.approx(np.pi**2 / 3, abs=1e-15)
    nb = FAMILIES["negative_binomial"]
    assert (nb.link, nb.cell_columns, nb.glm_family, nb.level1_variance) == (
        "log",
        ("count", "exposure"),
        "poisson",
        None,
    )
    ln = FAMILIES["lognormal"]
    assert (ln.link, ln.cell_outcome, ln.link_scale, ln.natural_scale) == (
        "identity",
        "log_mean",
        "log-mean",
        "ratio of geometric means",
    )
    g = FAMILIES["gaussian"]
    assert (g.link_scale, g.natural_scale, g.exp_natural) == ("mean", "difference", False)
    assert LINK_PHRASE == {
        "mean": "mean difference",
        "log-mean": "log ratio of geometric means",
        "log-odds": "log odds ratio",
        "log-rate": "log rate ratio",
    }
    assert [FAMILIES[n].total_column for n in ("binomial", "poisson", "lognormal")] == [
        "events",
        "count",
        "sum",
    ]
    assert of_kind("count") == ("poisson", "negative_binomial")
    with pytest.raises(ValueError, match="known: gaussian"):
        family("beta")


def test_links_and_natural_scale():
    x = np.array([-30.0, -1.3, 0.0, 2.2, 30.0])
    np.testing.assert_allclose(FAMILIES["bernoulli"].inverse_link(x), expit(x), rtol=1e-14, atol=0)
    np.testing.assert_allclose(FAMILIES["poisson"].inverse_link(x), np.exp(x), rtol=1e-15)
    np.testing.assert_array_equal(FAMILIES["gaussian"].inverse_link(x), x)
    assert FAMILIES["lognormal"].natural(np.log(2.0)) == pytest.approx(2.0, rel=1e-15)
    assert FAMILIES["gaussian"].natural(-0.7) == -0.7


def test_statsmodels_family_is_built_by_name():
    import statsmodels.api as sm

    assert isinstance(FAMILIES["bernoulli"].statsmodels_family(), sm.families.Binomial)
    assert isinstance(FAMILIES["negative_binomial"].statsmodels_family(), sm.families.Poisson)
    assert isinstance(FAMILIES["lognormal"].statsmodels_family(), sm.families.Gaussian)


def test_registries_import_nothing_heavy():
    code = (
        "import sys, qialign.families, qialign.methods, qialign.results, qialign.report.render; "
        "print(sorted(m for m in ('statsmodels', 'pymc', 'pytensor', 'arviz') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_method_registry():
    assert gee_method("nested_exchangeable", "md") == "gee_nested_exchangeable_md"
    assert label("gee_exchangeable_kc") == "GEE, exchangeable, Kauermann-Carroll SE"
    assert label("its_ols_newey_west") == "Segmented regression, OLS, Newey-West SE"
    assert {m.approach for m in METHODS.values()} == {"bayesian", "frequentist"}
    # cross_check runs exactly the registry's methods for concurrent controls
    assert CROSS_CHECK_RUNS == (
        "mixedlm",
        *(f"gee_exchangeable_{k}" for k in ("robust", "kc", "md", "fg")),
        *(f"gee_nested_exchangeable_{k}" for k in ("robust", "kc", "md", "fg")),
        "glm_cluster_robust",
    )
