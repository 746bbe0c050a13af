"""``qialign power``: the trial's schedule read off its cells, variance from its data, GLS power."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy.special import stdtr, stdtrit

from qialign.config import power_outcome
from qialign.errors import QialignError
from qialign.power import hussey_hughes_variance
from qialign.steps.power import power_step, schedule

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
        df = 3 * k - 2  # t reference on clusters - 2
        assert row["df"] == df and row["method"] == "gls_t" and row["icc_scale"] == "proportion"
        q = stdtrit(df, 0.975)
        want = stdtr(df, 0.1 / row["se"] - q) + stdtr(df, -0.1 / row["se"] - q)
        assert row["power"] == pytest.approx(want, rel=1e-10)
        assert row["mde"] == pytest.approx((q + stdtrit(df, 0.8)) * row["se"], rel=1e-12)
    # no interaction effects configured: its SE and MDE are still given, power is empty
    inter = full[(full["estimand"] == "interaction") & (full["search"] == "grid")]
    assert len(inter) == 2 and inter["power"].isna().all() and (inter["mde"] > 0).all()
    assert (inter["moderator"] == "balanced within sequences").all()


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
    grid = table[table["search"] == "grid"]
    # 3 ICCs x 2 CACs x 2 replicates x (treatment + interaction)
    assert len(grid) == 24 and set(grid["estimand"]) == {"treatment", "interaction"}
    # and per ICC x CAC x estimand the smallest clusters and cluster size
    assert table["search"].value_counts().to_dict() == {"grid": 24, "clusters": 12, "cluster_size": 12}
    bad = _config(tmp_path, {"outcome": "y"}, family="poisson")
    from qialign.config import load_trial_config

    with pytest.raises(QialignError, match="analytic power covers"):
        power_outcome(load_trial_config(bad))


HEADSUP = Path("config/trials/headsup_synthetic.yaml")


@pytest.fixture(scope="module")
def headsup(tmp_path_factory) -> Path:
    """HEADS-UP-shaped trial's excess_los cells and alignment scores, from the real producers."""
    from qialign.steps.alignment import alignment_scores
    from qialign.steps.prepare import prepare_outcome

    root = tmp_path_factory.mktemp("headsup")
    prepare_outcome(HEADSUP, "excess_los", root / "excess_los")
    alignment_scores(HEADSUP, root / "alignment" / "scores.csv")
    return root


def _direct_interaction_se(X, m, z, icc, s2) -> float:
    """[(sum_i Z_i' V_i^-1 Z_i)^-1]_gamma, Z_ij = (e_j, X_ij, z_i, X_ij z_i),
    V_i = s2 (icc J + (1 - icc) diag(1 / m_ij))."""
    periods = X.shape[1]
    info = np.zeros((periods + 3, periods + 3))
    for x, mi, zi in zip(X, m, z, strict=True):
        obs = ~np.isnan(x)
        Z = np.column_stack([np.eye(periods)[obs], x[obs], np.full(obs.sum(), zi), x[obs] * zi])
        V = s2 * (icc * np.ones((obs.sum(), obs.sum())) + np.diag((1 - icc) / mi[obs]))
        info += Z.T @ np.linalg.inv(V) @ Z
    return float(np.sqrt(np.linalg.inv(info)[-1, -1]))


def test_headsup_interaction_uses_the_trials_alignment(headsup, tmp_path):
    own = power_step(HEADSUP, headsup, tmp_path / "own.csv", headsup / "alignment" / "scores.csv")
    balanced = power_step(HEADSUP, headsup, tmp_path / "balanced.csv")

    def row(table):
        pick = (table["search"] == "grid") & (table["replicates"] == 1) & (table["estimand"] == "interaction")
        pick &= (table["icc"] == 0.05) & (table["cac"] == 1.0)
        (r,) = table[pick].to_dict("records")
        return r

    r_own, r_bal = row(own), row(balanced)
    assert r_own["moderator"] == "trial alignment" and r_bal["moderator"] == "balanced within sequences"
    # the numbers (m ~ 100): SE 0.0095 balanced vs 0.0106 with the trial's own alignment
    assert r_bal["se"] == pytest.approx(0.0092, abs=5e-4)
    assert r_own["se"] == pytest.approx(0.0103, abs=5e-4)
    assert r_own["se"] / r_bal["se"] == pytest.approx(1.118, abs=0.01)
    # exact against a direct GLS with the alignment column the model uses
    from qialign.alignment import standardise_over_clusters
    from qialign.data.io import read_results_csv, read_results_parquet

    cells = read_results_parquet(headsup / "excess_los" / "cells.parquet")
    X, m, clusters, _ = schedule(cells)
    scores = read_results_csv(headsup / "alignment" / "scores.csv")
    raw = scores[scores["wave"] == "1"].set_index("cluster")["alignment"].reindex(clusters)
    z = standardise_over_clusters(raw).to_numpy()
    assert r_own["clusters"] == 7 and r_own["df"] == 5
    want = _direct_interaction_se(X, m, z, 0.05, r_own["total_variance"])
    assert r_own["se"] == pytest.approx(want, rel=1e-10)
    q = stdtrit(5, 0.975)
    eff = -0.03 / r_own["se"]
    assert r_own["power"] == pytest.approx(stdtr(5, eff - q) + stdtr(5, -eff - q), rel=1e-10)


def _brute(achieved, start: int, limit: int = 5000) -> int:
    n = start
    while achieved(n) < 0.8:
        n += 1
        assert n < limit, "the brute force found nothing"
    return n


def test_search_matches_a_brute_force_loop_over_the_gls(tmp_path):
    from qialign.power import VarianceComponents, power, treatment_variance

    cfg = _config(tmp_path, {"effects": [0.1], "icc": [0.05], "cac": [0.8], "replicates": [1]})
    prepared = _prepared(tmp_path)
    table = power_step(cfg, prepared, tmp_path / "power.csv")
    s2 = table["total_variance"].iloc[0]
    vc = VarianceComponents.from_correlations(0.05, cac=0.8, total_variance=s2)
    X = np.array([[0, 1, 1, 1], [0, 0, 1, 1], [0, 0, 0, 1]], float)

    def by_clusters(n):  # clusters from the trial's in turn, 20 patients per cell, df n - 2
        return power(0.1, np.sqrt(treatment_variance(X[np.arange(n) % 3], 20, vc)), 0.05, n - 2)

    def by_size(m):  # the trial's 3 clusters, m patients per cell, df 1
        return power(0.1, np.sqrt(treatment_variance(X, m, vc)), 0.05, 1)

    found = table[table["estimand"] == "treatment"].set_index("search")
    n = _brute(by_clusters, 3)
    assert found.loc["clusters", "clusters"] == n and found.loc["clusters", "m"] == 20
    assert found.loc["clusters", "power"] >= 0.8 > by_clusters(n - 1)
    assert n > 20  # a real search, not the start
    # with 3 clusters and df 1 no cluster size reaches 0.8: reported as not found
    assert np.isnan(found.loc["cluster_size", "m"])
    cfg = _config(tmp_path, {"effects": [0.2], "icc": [0.05], "cac": [0.8], "replicates": [1], "df": 30})
    found = power_step(cfg, prepared, tmp_path / "p2.csv").set_index(["estimand", "search"])

    def by_size30(m):
        return power(0.2, np.sqrt(treatment_variance(X, m, vc)), 0.05, 30)

    m = _brute(by_size30, 1)
    assert found.loc[("treatment", "cluster_size"), "m"] == m and m > 5
    assert found.loc[("treatment", "cluster_size"), "df"] == 30


def test_closed_cohort_and_decay_from_the_config(tmp_path):
    from qialign.power import VarianceComponents, kasza_variance, treatment_variance

    cfg = {"icc": [0.05], "cac": [0.8], "iac": [0.0, 0.4], "decay": [1.0, 0.7], "replicates": [1]}
    table = power_step(_config(tmp_path, cfg), _prepared(tmp_path), tmp_path / "power.csv")
    tr = table[(table["search"] == "grid") & (table["estimand"] == "treatment")]
    tr = tr.set_index(["iac", "decay"])["se"]
    s2 = table["total_variance"].iloc[0]
    X = np.array([[0, 1, 1, 1], [0, 0, 1, 1], [0, 0, 0, 1]], float)
    vc = VarianceComponents.from_correlations(0.05, cac=0.8, iac=0.4, total_variance=s2)
    # closed cohort: Kasza et al. (2020) closed form with attrition 0
    want = kasza_variance(X, 20, vc.tau2, vc.gamma2, vc.psi2, vc.sigma2, attrition=0.0)
    assert tr.loc[(0.4, 1.0)] ** 2 == pytest.approx(want, rel=1e-10)
    decayed = VarianceComponents.from_correlations(0.05, cac=0.8, total_variance=s2, cluster_decay=0.7)
    assert tr.loc[(0.0, 0.7)] ** 2 == pytest.approx(treatment_variance(X, 20, decayed), rel=1e-12)
    assert tr.loc[(0.4, 1.0)] < tr.loc[(0.0, 1.0)] < tr.loc[(0.0, 0.7)]


def test_cli_solve_prints_the_smallest_clusters(tmp_path):
    cfg = _config(tmp_path, {"effects": [0.1], "icc": [0.05], "cac": [0.8], "replicates": [1]})
    out = tmp_path / "power.csv"
    run = subprocess.run(
        [str(BIN / "qialign"), "power", str(cfg), "--prepared-root", str(_prepared(tmp_path)),
         "--out", str(out), "--solve", "clusters", "--target", "0.9"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    table = pd.read_csv(out)
    n = table.query("search == 'clusters' and estimand == 'treatment'")["clusters"].item()
    assert "smallest clusters reaching power 0.9" in run.stdout
    assert f"\n{int(n):>8}" in run.stdout or f" {int(n)} " in run.stdout
    assert (table["target"] == 0.9).all()


def test_planning_section_states_df_scale_alignment_and_sample_size(headsup):
    from qialign.config import load_trial_config
    from qialign.report.context import Context
    from qialign.report.planning import planning

    table = power_step(HEADSUP, headsup, headsup / "power.csv", headsup / "alignment" / "scores.csv")
    ctx = Context(headsup, load_trial_config(HEADSUP), HEADSUP, headsup / "report.html")
    section = planning(ctx)
    text = " ".join(str(b.get("html", "")) for b in section.blocks)
    assert "t reference on 5, 12 degrees of freedom" in text  # 7 and 14 clusters
    assert "proportion scale, not the latent logit scale" in text
    assert "the trial's own alignment scores" in text
    search = section.blocks[-1]["table"]
    found = table[table["search"] == "clusters"]
    assert len(search.rows) == len(table[table["search"] != "grid"])
    first = found.iloc[0]
    assert search.rows[0][7] == str(int(first["clusters"])) and int(first["clusters"]) > 7
