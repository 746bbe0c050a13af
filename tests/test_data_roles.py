"""Survey roles as an export writes them: integer codes (YAML 1, 2, 3) or names with spaces, listed
directly in alignment.roles (compared as text, as the survey's role column is read)."""

from __future__ import annotations

import pandas as pd
import pytest
import yaml

from qialign.alignment.descriptive import descriptive_scores
from qialign.config import load_trial_config, validate_trial_config
from qialign.data import load_trial
from qialign.errors import QialignError
from test_data_helpers import CLUSTERS, find, problems_of, put, tiny_tables, write_trial

CODES = {"doctor": 1, "nurse": 2, "matron": 3}


def _scores(trial) -> pd.DataFrame:
    al = trial.cfg["alignment"]
    return descriptive_scores(trial.survey, al, CLUSTERS, seed=1, n_boot=20)


def test_integer_role_codes_from_yaml(tmp_path):
    tables, raw = tiny_tables()
    named = load_trial(write_trial(tmp_path / "named", tables, raw))
    tables["survey"]["role"] = tables["survey"]["role"].map(CODES)
    raw["alignment"]["roles"] = {"clinical": [1, 2], "managerial": [3]}
    cfg = write_trial(tmp_path / "coded", tables, raw)
    path = tmp_path / "coded" / "trial.yaml"
    path.write_text(yaml.safe_dump(raw | {"data": cfg["data"]}, sort_keys=False))
    assert "clinical:\n    - 1\n    - 2\n" in path.read_text()  # integers in the YAML, not strings
    cfg = load_trial_config(path)
    assert cfg["alignment"]["roles"] == {"clinical": ["1", "2"], "managerial": ["3"]}
    coded = load_trial(cfg)
    assert sorted(set(coded.survey["role"])) == ["1", "2", "3"]
    pd.testing.assert_frame_equal(_scores(coded), _scores(named))


def test_role_names_with_spaces_as_the_export_writes_them(tmp_path):
    tables, raw = tiny_tables()
    named = load_trial(write_trial(tmp_path / "named", tables, raw))
    tables["survey"]["role"] = tables["survey"]["role"].map(
        {"doctor": "Consultant", "nurse": "Staff Nurse", "matron": "Ward Sister"}
    )
    raw["alignment"]["roles"] = {"clinical": ["Consultant", "Staff Nurse"], "managerial": ["Ward Sister"]}
    exported = load_trial(write_trial(tmp_path / "exported", tables, raw))
    pd.testing.assert_frame_equal(_scores(exported), _scores(named))


def test_unlisted_role_code(tmp_path):
    tables, raw = tiny_tables()
    tables["survey"]["role"] = tables["survey"]["role"].map(CODES)
    put(tables["survey"], "role", 4, 4)
    raw["alignment"]["roles"] = {"clinical": [1, 2], "managerial": [3]}
    cfg = write_trial(tmp_path, tables, raw)
    p = find(problems_of(cfg), "survey", "role", cfg)
    assert (p.rows, p.expected) == ([5], "expected a role listed in alignment.roles: 1, 2, 3; found '4'")


def test_role_code_in_both_roles_is_a_config_error():
    _, raw = tiny_tables()
    raw["data"] = {"clusters": "c.csv", "patients": "p.csv", "survey": "s.csv"}
    raw["alignment"]["roles"] = {"clinical": [1, 2], "managerial": ["2", 3]}
    with pytest.raises(QialignError) as info:
        validate_trial_config(raw)
    assert (
        "- alignment/roles: '2' listed as both clinical and managerial; each staff group belongs to one role"
        in str(info.value)
    )
