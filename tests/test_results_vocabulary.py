"""estimates.csv's one vocabulary (qialign.results): the reference row and the row builders."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from qialign.families import FAMILIES
from qialign.frequentist import COLUMNS, cross_check
from qialign.frequentist.its import its_cross_check
from qialign.methods import METHODS
from qialign.results import (
    CROSSCHECK_COLUMNS,
    ESTIMATE_COLUMNS,
    REFERENCE_CROSSCHECKS,
    SCALES,
    bayesian_rows,
    frequentist_rows,
    interval_label,
)
from test_crosscheck_cells import simulate

ROOT = Path(__file__).resolve().parents[1]


def _freq(rows) -> pd.DataFrame:
    return pd.DataFrame(
        [[m, e, "log-odds", est, 0.1, -1.0, 1.0, 5.0, ""] for m, e, est in rows], columns=COLUMNS
    )


def test_reference_follows_the_order_and_skips_missing_estimates():
    freq = _freq(
        [
            ("glm_cluster_robust", "treatment_effect", 0.1),
            ("gee_exchangeable_md", "treatment_effect", 0.2),
            ("gee_nested_exchangeable_md", "treatment_effect", np.nan),  # failed: not the reference
            ("glm_cluster_robust", "alignment_interaction", 0.3),
            ("mixedlm", "alignment_interaction", 0.4),  # not in the order: after the listed ones
        ]
    )
    out = frequentist_rows(freq, "t", "y", "m1", 0.9)
    assert list(out.columns) == list(CROSSCHECK_COLUMNS)
    ref = out.loc[out["reference"], ["method", "estimand"]].values.tolist()
    assert ref == [
        ["gee_exchangeable_md", "treatment_effect"],
        ["glm_cluster_robust", "alignment_interaction"],
    ]
    assert set(out["interval"]) == {"ci90"}
    assert set(out["model"]) == {"m1"}
    # a log-odds GEE / GLM row estimates no Bayesian row; the mixed model's is the same-named one
    assert list(out["comparable_to"]) == ["", "", "", "", "alignment_interaction"]
    assert list(out["conditioning"]) == [*["population-averaged"] * 4, "conditional"]
    assert set(out["population"]) == {"new cluster"}
    assert set(out["approach"]) == {"frequentist"}
    assert REFERENCE_CROSSCHECKS[0] == "gee_nested_exchangeable_md"


def test_unknown_method_is_refused():
    with pytest.raises(ValueError, match="not in qialign.methods"):
        frequentist_rows(_freq([("gee_magic", "treatment_effect", 0.1)]), "t", "y", "m1", 0.95)


def test_bayesian_rows_and_labels():
    est = pd.DataFrame(
        [["treatment_effect", "conditional", "new cluster", "log-odds", 0.1, -0.2, 0.4, "eti95", 1.0, 800.0]],
        columns=[
            *("estimand", "conditioning", "population", "scale", "estimate", "lower", "upper"),
            *("interval", "r_hat", "ess_bulk"),
        ],
    )
    out = bayesian_rows(est, "t", "y", "m1", "draws")
    assert list(out.columns) == list(ESTIMATE_COLUMNS)
    row = out.iloc[0]
    assert (row["approach"], row["method"], row["comparable_to"], row["reference"]) == (
        "bayesian",
        "bayes_draws",
        "",
        False,
    )
    assert interval_label(0.95, "eti") == "eti95"
    assert interval_label(0.9, "hdi") == "hdi90"
    assert interval_label(0.95, "ci") == "ci95"
    with pytest.raises(ValueError):
        interval_label(0.95, "credible")


@pytest.mark.parametrize("family", list(FAMILIES))
def test_every_family_cross_check_speaks_the_vocabulary(family):
    """The real producers (cross_check, its_cross_check) for every family, as the step writes them."""
    d = simulate("bernoulli" if family == "binomial" else family, clusters=8, periods=4, m=10)
    table = pd.concat([cross_check(d, family, moderators=["alignment_z"]), its_cross_check(d, family)])
    out = frequentist_rows(table, "t", "y", "main", 0.95)
    fam = FAMILIES[family]
    assert set(out["scale"]) <= set(SCALES)
    assert set(out.loc[out["estimand"].str.endswith("_natural"), "scale"]) == {fam.natural_scale}
    assert set(out.loc[out["estimand"] == "treatment_effect", "scale"]) == {fam.link_scale}
    assert all(METHODS[m].approach == "frequentist" for m in out["method"])
    assert (out.groupby("estimand")["reference"].sum() == 1).all()
    ref = out[out["reference"]].set_index("estimand")["method"]
    assert ref["treatment_effect"] == "gee_nested_exchangeable_md"
    # gaussian: natural = link scale values; every other family: exp of the link-scale row
    link = out[(out["method"] == ref["treatment_effect"]) & (out["estimand"] == "treatment_effect")].iloc[0]
    nat = out[
        (out["method"] == ref["treatment_effect"]) & (out["estimand"] == "treatment_effect_natural")
    ].iloc[0]
    expect = np.exp(link["upper"]) if fam.exp_natural else link["upper"]
    assert nat["upper"] == pytest.approx(expect, rel=1e-12)


def test_the_fit_rule_writes_exactly_the_contract_files_and_the_record_round_trips(tmp_path):
    """The fit rule's outputs come from FIT_FILES (one table, no second list), as Snakemake plans
    them; a record reads back field by field, and one written before a field existed reads it as None."""
    from qialign.results import FIT_FILES, FitRecord

    target = "results/sicily_its/aces/its/fit.json"
    plan = subprocess.run(
        [str(Path(sys.executable).parent / "snakemake"), "-n", "--forceall", target],
        cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    assert plan.returncode == 0, plan.stderr[-2000:]
    lines = plan.stdout.splitlines()
    start = lines.index("rule fit:")
    outputs = next(line for line in lines[start:] if line.strip().startswith("output:"))
    assert sorted(o.strip().rsplit("/", 1)[1] for o in outputs.split(":", 1)[1].split(",")) == sorted(
        FIT_FILES.values()
    )
    record = FitRecord(
        **{f: None for f in FitRecord.__dataclass_fields__} | {"trial": "t", "problems": ["x"]}
    )
    record.write(tmp_path / "fit.json")
    assert FitRecord.read(tmp_path / "fit.json") == record
    (tmp_path / "old.json").write_text('{"trial": "t", "reliable": false}')  # a record from before a field
    old = FitRecord.read(tmp_path / "old.json")
    assert old.reliable is False and old.ppc is None
