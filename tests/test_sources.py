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
    assert {"alignment/latent.py", "families.py", "data/io.py", "provenance.py", "errors.py"} <= fit
    assert not any(name.startswith(("report/", "power/", "frequentist/")) for name in fit)


def test_fit_runs_every_inference_module_and_an_edit_to_any_changes_its_hash(tmp_path):
    inference = sorted(p.name for p in (SRC / "inference").glob("*.py"))
    assert {"sampling.py", "fit.py", "compile_cache.py", "diagnostics.py", "pooling.py"} <= set(inference)
    assert {f"inference/{name}" for name in inference} <= _names("steps/fit.py")
    root = tmp_path / "qialign"
    shutil.copytree(SRC, root)
    before = source_hash(root, "steps/fit.py")
    for name in inference:
        module = root / "inference" / name
        text = module.read_text()
        module.write_text(text + "\n# edited\n")
        assert source_hash(root, "steps/fit.py") != before, name
        module.write_text(text)
    assert source_hash(root, "steps/fit.py") == before


def test_validation_follows_the_identification_check_but_not_the_sampler():
    prepare = _names("steps/prepare.py")
    assert {"models/identification.py", "models/design.py", "models/spec.py"} <= prepare
    assert "models/build.py" not in prepare
    assert not any(name.startswith("inference/") for name in prepare)


def test_an_edit_changes_exactly_the_hashes_of_the_steps_that_run_it(tmp_path):
    root = tmp_path / "qialign"
    shutil.copytree(SRC, root)
    steps = ("steps/fit.py", "steps/prepare.py", "steps/power.py", "steps/crosscheck.py")
    before = {e: source_hash(root, e) for e in steps}
    latent = root / "alignment" / "latent.py"
    latent.write_text(latent.read_text() + "\n# edited\n")
    after = {e: source_hash(root, e) for e in before}
    assert after["steps/fit.py"] != before["steps/fit.py"]
    assert after["steps/prepare.py"] == before["steps/prepare.py"]
    gee = root / "frequentist" / "gee.py"  # the cross-checks' estimator: neither fit nor power runs it
    gee.write_text(gee.read_text() + "\n# edited\n")
    again = {e: source_hash(root, e) for e in before}
    assert again["steps/crosscheck.py"] != after["steps/crosscheck.py"]
    assert (
        again["steps/fit.py"] == after["steps/fit.py"] and again["steps/power.py"] == after["steps/power.py"]
    )
    schema = "config/trial.schema.yaml"
    with_schema = source_hash(root, "steps/prepare.py", schema)
    (root / schema).write_text((root / schema).read_text() + "\n# edited\n")
    assert source_hash(root, "steps/prepare.py", schema) != with_schema


def test_a_name_from_a_package_runs_its_init_not_every_module():
    """``from qialign import __version__`` (the report) runs ``qialign/__init__.py`` only, so the
    report step is not re-run by an edit to the sampler; names re-exported by an ``__init__`` are
    followed through its own imports."""
    report = _names("report/__init__.py")  # the report rule's entry
    assert "report/methods.py" in report and "__init__.py" in report
    assert not any(name.startswith(("inference/", "studies/")) for name in report), sorted(report)
    assert "alignment/descriptive.py" in _names("steps/crosscheck.py")  # via alignment/__init__.py
    for init in SRC.rglob("__init__.py"):
        text = init.read_text()
        assert "import_module" not in text and "__getattr__" not in text, init


def test_a_schema_default_edit_re_runs_every_step_that_reads_the_config(tmp_path):
    root = tmp_path / "qialign"
    shutil.copytree(SRC, root)
    steps = ("steps/fit.py", "steps/crosscheck.py", "steps/power.py", "steps/alignment.py")
    steps += ("steps/prepare.py", "report/__init__.py")
    before = {e: source_hash(root, e) for e in steps}
    schema = root / "config" / "trial.schema.yaml"
    schema.write_text(schema.read_text().replace("default: 5,", "default: 6,", 1))
    assert all(source_hash(root, e) != before[e] for e in steps)
    template = root / "report" / "templates" / "template.html.j2"
    report, fit = source_hash(root, "report/__init__.py"), source_hash(root, "steps/fit.py")
    template.write_text(template.read_text() + "\n")
    assert source_hash(root, "report/__init__.py") != report
    assert source_hash(root, "steps/fit.py") == fit  # the fits do not read the report's template
