"""Config mistakes that Snakemake sees first give qialign's one-screen message (file, key, what was
expected, a close match for a typo), never a traceback or a dump of the schema."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tiny_project import copy_project

pytestmark = pytest.mark.workflow

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
GOOD = {
    "id": "t",
    "design": "stepped_wedge",
    "data": {"clusters": "c.csv", "patients": "p.csv"},
    "outcomes": {"y": {"family": "bernoulli"}},
    "seed": 1,
}


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("config_errors")
    copy_project(work)
    (work / "config" / "trials").mkdir(parents=True)
    return work


CASES = {
    "empty": ("", ["config/trials/t.yaml", "the file is empty"]),
    "not a mapping": ("- a\n- b\n", ["config/trials/t.yaml", "expected a YAML mapping"]),
    "unknown model key": (
        {**GOOD, "models": [{"id": "m", "trnd": "linear"}]},
        ["config/trials/t.yaml", "models/0", "unknown key 'trnd'", "did you mean 'trend'"],
    ),
    "wrong type": (
        {**GOOD, "seed": "abc"},
        ["config/trials/t.yaml", "seed", "'abc' is not of type 'integer'"],
    ),
    "id differs from the file name": ({**GOOD, "id": "other"}, ["id 'other' should equal the file name 't'"]),
    "no file": (None, ["config.yaml lists trial 't'", "config/trials/t.yaml", "not found"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_snakemake_stops_with_the_validate_message(project, case):
    content, expected = CASES[case]
    path = project / "config" / "trials" / "t.yaml"
    path.unlink(missing_ok=True)
    if content is not None:
        path.write_text(content if isinstance(content, str) else yaml.safe_dump(content))
    (project / "config" / "config.yaml").write_text("trials: [t]\n")
    run = subprocess.run([str(BIN / "snakemake"), "-n"], cwd=project, capture_output=True, text=True)
    text = run.stdout + run.stderr
    assert run.returncode != 0
    assert "Traceback" not in text and "$schema" not in text and "properties" not in text
    for piece in expected:
        assert piece in text, (piece, text)
    assert len(run.stderr.splitlines()) < 15, run.stderr
