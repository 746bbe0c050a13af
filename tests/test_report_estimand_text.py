"""The estimand paragraph of the methods section names the cross-checks that were fitted by what
they estimate (the methods registry's ``conditioning``), in one sentence that starts with a word."""

from __future__ import annotations

import pytest

from qialign.report import methods as M


@pytest.mark.parametrize(
    ("fitted", "said"),
    [
        (["gee_exchangeable_robust", "gee_exchangeable_kc", "mixedlm"],
         " GEE estimates population-averaged effects; the linear mixed model estimates conditional"
         " effects; the"),
        (["its_quasipoisson", "its_ols_newey_west"],
         " Segmented regression estimates population-averaged effects; the"),
        (["glm_cluster_robust", "gee_nested_exchangeable_md"],
         " The cluster-robust GLM and GEE estimate population-averaged effects; the"),
        (["its_segmented"], " The report sets a frequentist row beside"),
    ],
    ids=["gee_and_mixed", "its", "glm_and_gee", "nothing_fitted"],
)  # fmt: skip
def test_the_estimand_text_names_what_each_cross_check_estimates(monkeypatch, fitted, said):
    monkeypatch.setattr(M, "_methods_present", lambda ctx: fitted)
    monkeypatch.setattr(M, "_integrated_effects", lambda ctx: "over the cluster effects")
    text = M.estimand_text(None)
    tail = text[text.index("then contrast the two.") + len("then contrast the two.") :]
    assert tail.startswith(said), tail
