"""nutpie models are compiled once per structure: same structure with other data reuses the
compilation (from disk in a later process), another structure does not, and a fit from a warm
cache draws exactly what a cold one drew."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pymc.model.transform.optimization import freeze_dims_and_data
from scipy.special import expit

from models_sim import simulate
from qialign.inference import structure_cache
from qialign.inference.fit import stored_per_draw
from qialign.inference.sampling import compile_nutpie, nutpie_sample
from qialign.models.build import build_model
from qialign.models.design import build_design
from qialign.models.spec import simulated_spec

SPEC = simulated_spec("binomial", {"id": "m", "site_effect": False})
TINY = {"chains": 2, "draws": 60, "tune": 60, "cores": 1, "target_accept": 0.9}


def cells(seed: int, n_clusters: int = 4, n_periods: int = 4) -> pd.DataFrame:
    """Binomial stepped-wedge cells, cluster j starting at period j + 2."""
    rng = np.random.default_rng(seed)
    rows = []
    for j in range(n_clusters):
        for t in range(1, n_periods + 1):
            treated = int(t >= j + 2)
            n = int(rng.integers(20, 40))
            p = expit(-0.5 + 0.3 * rng.normal() - 0.4 * treated)
            rows.append(
                {
                    "cluster": f"c{j}",
                    "site": "s",
                    "period": t,
                    "treated": treated,
                    "exposure_time": max(0, t - j - 1) if treated else 0,
                    "n": n,
                    "events": int(rng.binomial(n, p)),
                }
            )
    return pd.DataFrame(rows)


def model(seed: int, **shape):
    design = build_design(cells(seed, **shape), SPEC, None)
    return freeze_dims_and_data(build_model(design, SPEC), data=[])


def key(m) -> str:
    return structure_cache.graph_key(*structure_cache._graph(m))


def test_the_key_is_the_structure_not_the_data():
    assert key(model(1)) == key(model(2))  # other outcomes, same cells layout
    assert key(model(1)) == key(model(1))  # and stable
    assert key(model(1)) != key(model(1, n_clusters=5))  # more clusters: other shapes
    assert key(model(1)) != key(model(1, n_periods=5))


def _compile(m, cache_dir):
    jitter = set(m.free_RVs)
    return structure_cache.compile_by_structure(m, None, jitter, cache_dir)


@pytest.fixture
def fresh_memory(monkeypatch):
    """An empty in-process store, so that compiles go to the disk cache."""
    monkeypatch.setattr(structure_cache, "_MEMORY", {})


def test_a_warm_cache_loads_the_compilation_and_draws_bit_identically(tmp_path, fresh_memory):
    cold, info = _compile(model(1), tmp_path)
    assert info.source == "compiled"
    cold_draws = nutpie_sample(cold, TINY, seed=5)
    structure_cache._MEMORY.clear()  # as a new process: only the disk cache is left
    warm, info_warm = _compile(model(1), tmp_path)
    assert (info_warm.source, info_warm.key) == ("disk", info.key)
    assert warm.compiled_logp_func.cache_hits == 1  # numba loaded it, did not compile
    warm_draws = nutpie_sample(warm, TINY, seed=5)
    for name in ("treatment_effect", "sd_cluster", "mu"):
        np.testing.assert_array_equal(cold_draws["posterior"][name], warm_draws["posterior"][name])
    # other data, same structure: the same compilation, other numbers
    other, info_other = _compile(model(2), tmp_path)
    assert (info_other.source, info_other.key) == ("memory", info.key)
    other_draws = nutpie_sample(other, TINY, seed=5)
    assert not np.array_equal(cold_draws["posterior"]["mu"], other_draws["posterior"]["mu"])
    # the data reach the compiled code as arguments: swapping the outcome changes the draws
    y = next(cold.shared_data[k] for v, k in cold.shared_var_keys.items() if v.name == "y_observed")
    swapped = nutpie_sample(other.with_data(y_observed=y), TINY, seed=5)
    assert not np.array_equal(swapped["posterior"]["mu"], other_draws["posterior"]["mu"])


def test_another_structure_is_a_miss(tmp_path):
    """A structure never compiled has nothing on disk (the warm path declines, so it compiles)."""
    other = key(model(1, n_clusters=5))
    assert structure_cache._warm(tmp_path / f"m_{other}.py") is None


def patient_rows_model(n_per_cp: int, n_clusters: int = 6):
    """A patient-row stepped wedge with a continuous covariate: its cells are the patients, so a
    re-export with more patients has more cells in the same clusters and periods."""
    _, rows, al, _ = simulate("bernoulli", n_clusters=n_clusters, n_periods=4, n_per_cp=n_per_cp, seed=5)
    spec = simulated_spec("bernoulli", {"id": "m"}, covariates=["age"])
    return build_model(build_design(rows, spec, al), spec)


def test_other_patients_in_the_same_clusters_and_periods_reuse_the_compilation(
    tmp_path, fresh_memory, monkeypatch
):
    """The cells' count is data (``data_only_dims``): not in the key, an argument of the compiled
    code; a model compiled for 178 cells samples 189 exactly as their own compilation does."""
    small, large = patient_rows_model(8), patient_rows_model(9)
    assert small.dim_lengths["cell"].eval() != large.dim_lengths["cell"].eval()
    stored = stored_per_draw(large)
    assert structure_cache.data_only_dims(large, stored) == {"cell", "stratum"}
    keys = [structure_cache.structure_key(m, stored) for m in (small, large, patient_rows_model(8, 7))]
    assert keys[0] == keys[1] != keys[2]  # more cells: the same; one more cluster: another structure
    monkeypatch.setenv("QIALIGN_CACHE_DIR", str(tmp_path / "a"))
    compile_nutpie(small, var_names=stored)
    reused = compile_nutpie(large, var_names=stored)
    assert len(structure_cache._MEMORY) == 1  # one compilation for both
    structure_cache._MEMORY.clear()
    monkeypatch.setenv("QIALIGN_CACHE_DIR", str(tmp_path / "b"))  # nothing on disk: compiled anew
    own = compile_nutpie(large, var_names=stored)
    draws = [nutpie_sample(c, TINY, seed=5)["posterior"] for c in (reused, own)]
    for name in ("treatment_effect", "beta", "sd_cluster_period"):
        np.testing.assert_array_equal(draws[0][name], draws[1][name])
