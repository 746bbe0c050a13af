"""Identification of the treatment terms before fitting (issue: right answers on every input shape).

A model whose treatment effect lies in the span of its trend terms gets a prior-driven answer; the
rank check stops it at validation. A minimal interrupted-time-series config (no models key) gets
the segmented regression and the tutorial's answer on the Sicily data.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from qialign.config import validate_trial_config
from qialign.models.identification import unidentified_terms
from qialign.models.spec import ModelSpec, simulated_spec

ROOT = Path(__file__).resolve().parents[1]
QIALIGN = Path(sys.executable).parent / "qialign"
SICILY = {
    "id": "sicily_min",
    "design": "interrupted_time_series",
    "data": {
        "clusters": str(ROOT / "resources/sicily_its/clusters.csv"),
        "cluster_periods": str(ROOT / "resources/sicily_its/series.csv"),
    },
    "outcomes": {"aces": {"family": "negative_binomial", "exposure": "stdpop"}},
    "seed": 2017,
}
PUBLISHED = (0.885, 0.839, 0.933)  # Lopez Bernal et al. 2017: level change RR and 95% CI


def _schedule(starts: dict[str, int | None], periods: int) -> pd.DataFrame:
    rows = []
    for c, s in starts.items():
        for t in range(1, periods + 1):
            tr = int(s is not None and t >= s)
            rows.append({"cluster": c, "period": t, "treated": tr, "exposure_time": t - s + 1 if tr else 0})
    return pd.DataFrame(rows)


def _spec(**model) -> ModelSpec:
    return simulated_spec("poisson", {"id": "m", **model})  # stepped wedge: period trend


ITS = _schedule({"a": 7}, 12)
SW = _schedule({"a": 2, "b": 3, "c": 4, "d": 5}, 5)
CBA = _schedule({"a": 4, "b": 4, "c": None, "d": None}, 6)


@pytest.mark.parametrize(
    ("cells", "model", "moderated", "bad"),
    [
        (ITS, {"trend": "period"}, False, ["treatment_effect"]),
        (ITS, {"trend": "rw1"}, False, ["treatment_effect"]),
        (ITS, {"trend": "linear"}, False, []),
        (ITS, {"trend": "linear", "slope_change": True}, False, []),
        (ITS, {"trend": "spline"}, False, []),
        (ITS, {"trend": "linear"}, True, ["alignment_main", "alignment_interaction"]),
        (SW, {"trend": "period"}, True, []),
        (SW, {"trend": "period", "exposure": "eti"}, True, []),
        (CBA, {"trend": "period", "exposure": "eti"}, True, []),
        # one start for every treated cluster: an exposure-time effect per period after the start
        # is a period effect of the treated clusters, identified by the controls; linear eti in an
        # ITS is a free effect per post period on top of a linear trend (identified, the pre-period
        # fixes the line)
        (ITS, {"trend": "linear", "exposure": "eti"}, False, []),
        # a slope change plus a linear trend and a free effect for every exposure time: the slope
        # is a sum of exposure-time effects
        (ITS, {"trend": "linear", "exposure": "eti", "slope_change": True}, False, ["slope_change"]),
    ],
)
def test_rank_check_names_the_unidentified_terms(cells, model, moderated, bad):
    assert unidentified_terms(cells, _spec(**model), moderated) == bad


def _resolved(cfg: dict, table: str = "cluster_periods", family: str = "negative_binomial") -> ModelSpec:
    cfg = validate_trial_config(cfg)
    outcome = {**cfg["outcomes"]["aces"], "family": family}
    return ModelSpec.from_config(cfg["models"][0], "aces", outcome, cfg, table=table)


def test_auto_defaults_follow_the_design_and_the_data():
    its = _resolved(SICILY)
    assert (its.trend, its.cluster_period, its.overdispersion) == ("linear", "ar1", "cell")
    sw_cells = _resolved({**SICILY, "design": "stepped_wedge"})
    assert (sw_cells.trend, sw_cells.cluster_period) == ("period", "none")  # NB shape is the cell effect
    sw_rows = _resolved({**SICILY, "design": "stepped_wedge"}, table="patients")
    assert (sw_rows.cluster_period, sw_rows.overdispersion) == ("exchangeable", "patient")
    binary = _resolved({**SICILY, "design": "controlled_before_after"}, family="binomial")
    assert (binary.trend, binary.cluster_period) == ("period", "exchangeable")
    kept = _resolved({**SICILY, "models": [{"id": "a", "trend": "spline", "cluster_period": "none"}]})
    assert (kept.trend, kept.cluster_period) == ("spline", "none")


def _validate(tmp_path: Path, cfg: dict) -> subprocess.CompletedProcess:
    path = tmp_path / f"{cfg['id']}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return subprocess.run([str(QIALIGN), "validate", str(path)], capture_output=True, text=True)


def test_its_with_period_trend_stops_at_validation(tmp_path):
    cfg = {**SICILY, "models": [{"id": "hh", "trend": "period"}]}
    out = _validate(tmp_path, cfg)
    assert out.returncode == 2, out.stdout + out.stderr
    msg = out.stderr
    assert "Traceback" not in msg
    assert "models/hh" in msg and "'trend'" in msg and "treatment_effect is not identified" in msg
    assert "trend: linear" in msg and "slope_change" in msg  # the fix


def test_minimal_its_config_gives_the_tutorials_level_change(tmp_path):
    """No models key: the default model (linear pre-trend, AR(1), NB with cell-level shape) through
    the real prepare and fit steps lands inside the tutorial's 95% interval."""
    from qialign.steps.fit import fit_step
    from qialign.steps.prepare import prepare_outcome

    cfg = dict(SICILY)  # default sampler 2 x (500 + 500) and diagnostics (one retry)
    path = tmp_path / "sicily_min.yaml"
    path.write_text(yaml.safe_dump(cfg))
    prepared = tmp_path / "aces"
    prepare_outcome(path, "aces", prepared)
    record = fit_step(path, "aces", "main", prepared, tmp_path / "none.csv", tmp_path / "fit")
    est = pd.read_csv(tmp_path / "fit" / "estimates.csv").set_index("estimand")
    rr = est.loc["treatment_effect_natural"]
    assert PUBLISHED[1] < rr["estimate"] < PUBLISHED[2], rr
    assert rr["lower"] < PUBLISHED[0] < rr["upper"]
    assert record.reliable, record.problems
    assert record.r_hat_max < 1.02


def test_main_effect_columns_exist_in_the_graph():
    """Alignment enters as a main effect and in the interaction of the Bayesian model."""
    from qialign.models.build import build_model
    from qialign.models.design import build_design

    cells = SW.assign(n=50, events=10)
    spec = simulated_spec("binomial", {"id": "m"})
    alignment = pd.Series(np.linspace(0.5, 0.9, 4), index=list("abcd"))
    model = build_model(build_design(cells, spec, alignment), spec)
    names = {v.name for v in model.free_RVs}
    assert {"alignment_main", "alignment_interaction"} <= names


@pytest.fixture(autouse=True)
def _in_root():
    cwd = os.getcwd()
    os.chdir(ROOT)
    yield
    os.chdir(cwd)
