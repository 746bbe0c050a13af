"""The rules' code hashes follow each step's imports (qialign.sources), so no edit leaves stale
results and edits elsewhere do not re-run a step."""

from __future__ import annotations

import shutil
from pathlib import Path

from qialign.sources import source_hash, step_files

SRC = Path(__file__).resolve().parents[1] / "src" / "qialign"


def _names(entry: str) -> set[str]:
    return {str(p.relative_to(SRC)) for p in step_files(SRC, entry)}


def test_fit_runs_the_modules_the_old_list_missed():
    fit = _names("steps/fit.py")
    # missed by the hand-written list (config.py, models, steps/fit.py, steps/alignment.py)
    assert {"alignment/latent.py", "scales.py", "data/io.py", "provenance.py", "errors.py"} <= fit
    assert not any(name.startswith(("report/", "power/", "frequentist/")) for name in fit)


def test_validation_follows_the_identification_check_but_not_the_sampler():
    prepare = _names("steps/prepare.py")
    assert {"models/identification.py", "models/design.py", "models/spec.py"} <= prepare
    assert "models/build.py" not in prepare and "models/fit.py" not in prepare


def test_an_edit_changes_exactly_the_hashes_of_the_steps_that_run_it(tmp_path):
    root = tmp_path / "qialign"
    shutil.copytree(SRC, root)
    before = {e: source_hash(root, e) for e in ("steps/fit.py", "steps/prepare.py", "steps/power.py")}
    latent = root / "alignment" / "latent.py"
    latent.write_text(latent.read_text() + "\n# edited\n")
    after = {e: source_hash(root, e) for e in before}
    assert after["steps/fit.py"] != before["steps/fit.py"]
    assert after["steps/prepare.py"] == before["steps/prepare.py"]
    assert after["steps/power.py"] == before["steps/power.py"]
    schema = "config/trial.schema.yaml"
    with_schema = source_hash(root, "steps/prepare.py", schema)
    (root / schema).write_text((root / schema).read_text() + "\n# edited\n")
    assert source_hash(root, "steps/prepare.py", schema) != with_schema
