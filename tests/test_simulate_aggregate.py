"""The simulator's ``aggregate: true``: bernoulli outcomes summed per cluster-period, no patient rows
(the shipped synthesis trials are made this way)."""

from __future__ import annotations

import pytest

from qialign.studies.simulate import simulate_trial
from qialign.studies.simulate_spec import SpecError

SPEC = {
    "periods": 5,
    "clusters_per_site": [2, 2],
    "schedule": {"baseline": 1, "every": 1, "per_step": 1},
    "survey": {"enabled": False},
    "fidelity": {"enabled": False},
    "outcomes": {"y": {"family": "bernoulli", "baseline": 0.3, "betas": {}}},
}


def test_aggregated_events_are_the_patient_rows_summed_with_the_same_seed():
    rows = simulate_trial(SPEC, 5)
    cells = simulate_trial({**SPEC, "aggregate": True}, 5)
    assert cells.patients is None
    summed = rows.patients.groupby(["cluster", "period"])["y"].agg(["sum", "size"]).reset_index()
    merged = cells.cluster_periods.merge(summed, on=["cluster", "period"], how="left").fillna(0)
    assert (merged["y"] == merged["sum"]).all() and (merged["n"] == merged["size"]).all()
    assert merged["y"].sum() == rows.patients["y"].sum() > 0


def test_aggregate_refuses_outcomes_it_cannot_sum():
    spec = {**SPEC, "aggregate": True, "outcomes": {"y": {"family": "bernoulli", "betas": {"age": 0.1}}}}
    with pytest.raises(SpecError, match="aggregate: true sums bernoulli outcomes"):
        simulate_trial(spec, 5)
