"""``qialign power``: the trial's schedule read off its cells, variance from its data, GLS power."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy.special import ndtr, ndtri

from qialign.errors import QialignError
from qialign.power import hussey_hughes_variance
from qialign.steps.power import power_outcome, power_step, schedule

BIN = Path(sys.executable).parent


def _cells() -> pd.DataFrame:
    """3 clusters x 4 periods stepped wedge (starts 2, 3, 4), 2 covariate patterns per cell."""
    rows = []
    for j, start in enumerate((2, 3, 4)):
        for t in range(1, 5):
            for pattern, events in (("a", 2 + j), ("b", 1)):
                rows.append(
                    {"cluster": f"c{j}", "period": t, "treated": int(t >= start), "age": pattern}
                    | {"n": 10, "events": events}
                )
    return pd.DataFrame(rows)


def _config(tmp_path: Path, power: dict, family: str = "bernoulli") -> Path:
    cfg = {
        "id": "p",
        "design": "stepped_wedge",
        "data": {"patients": "x.csv", "clusters": "c.csv"},
        "outcomes": {"y": {"family": family}},
        "seed": 1,
        "power": power,
    }
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _prepared(tmp_path: Path) -> Path:
    root = tmp_path / "results"
    (root / "y").mkdir(parents=True)
    _cells().to_parquet(root / "y" / "cells.parquet")
    (root / "y" / "prepared.json").write_text('{"family": "bernoulli"}')
    return root


def test_schedule_read_off_the_cells():
    X, m, clusters, periods = schedule(_cells())
    np.testing.assert_array_equal(X, [[0, 1, 1, 1], [0, 0, 1, 1], [0, 0, 0, 1]])
    assert (m == 20).all() and clusters == ["c0", "c1", "c2"] and periods == [1, 2, 3, 4]


def test_power_matches_hussey_hughes_closed_form(tmp_path):
    cfg = _config(tmp_path, {"effects": [0.1], "icc": [0.05], "cac": [1.0], "replicates": [1, 2]})
    full = power_step(cfg, _prepared(tmp_path), tmp_path / "power.csv")
    table = full[full["estimand"] == "treatment"].set_index("replicates")
    p = 4 * (3 + 4 + 5) / (3 * 4 * 20)  # cluster j has 3 + j events in each of its 4 cells of 20
    s2 = p * (1 - p)
    assert table.loc[1, "total_variance"] == pytest.approx(s2)
    X = np.array([[0, 1, 1, 1], [0, 0, 1, 1], [0, 0, 0, 1]], float)
    for k in (1, 2):
        var = hussey_hughes_variance(np.tile(X, (k, 1)), 20, s2 * 0.95, s2 * 0.05)
        row = table.loc[k]
        assert row["clusters"] == 3 * k
        assert row["se"] == pytest.approx(np.sqrt(var), rel=1e-10)
        z = ndtri(0.975)
        want = ndtr(0.1 / row["se"] - z) + ndtr(-0.1 / row["se"] - z)
        assert row["power"] == pytest.approx(want, rel=1e-6)
        assert row["mde"] == pytest.approx((z + ndtri(0.8)) * row["se"], rel=1e-12)
    # no interaction effects configured: its SE and MDE are still given, power is empty
    inter = full[full["estimand"] == "interaction"]
    assert len(inter) == 2 and inter["power"].isna().all() and (inter["mde"] > 0).all()


def test_power_cli_and_unsupported_outcome(tmp_path):
    cfg = _config(tmp_path, {"effects": [0.1], "interaction_effects": [0.05]})
    out = tmp_path / "power.csv"
    run = subprocess.run(
        [str(BIN / "qialign"), "power", str(cfg), "--prepared-root", str(_prepared(tmp_path)),
         "--out", str(out)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    table = pd.read_csv(out)
    # 3 ICCs x 2 CACs x 2 replicates x (treatment + interaction)
    assert len(table) == 24 and set(table["estimand"]) == {"treatment", "interaction"}
    bad = _config(tmp_path, {"outcome": "y"}, family="poisson")
    from qialign.config import load_trial_config

    with pytest.raises(QialignError, match="analytic power covers"):
        power_outcome(load_trial_config(bad))
