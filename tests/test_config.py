"""Trial config schema: defaults, rejection of unknown keys, cross-references."""

import pytest
import yaml

from qialign.config import (
    SCHEMA_PATH,
    load_trial_config,
    models_for,
    sampler_for,
    validate_trial_config,
)
from qialign.errors import QialignError

MINIMAL = {
    "id": "t1",
    "design": "stepped_wedge",
    "data": {"clusters": "c.csv", "patients": "p.csv"},
    "outcomes": {"y": {"family": "bernoulli"}},
    "seed": 1,
}


def test_defaults_are_filled_and_independent():
    cfg = validate_trial_config({**MINIMAL, "models": [{"id": "a"}, {"id": "b"}]})
    assert cfg["models"][0]["trend"] == "auto"  # resolved per design and outcome by ModelSpec
    assert cfg["models"][0]["priors"]["effect_sd"] == 1.0
    assert cfg["diagnostics"] == {
        "r_hat_max": 1.01,
        "ess_bulk_min": 400,
        "ess_tail_min": 400,
        "divergences_max": 0,
        "ebfmi_min": 0.3,
        "retry": True,
    }
    assert cfg["interval"] == {"prob": 0.95, "kind": "eti"}
    cfg["models"][0]["priors"]["effect_sd"] = 9.0
    assert cfg["models"][1]["priors"]["effect_sd"] == 1.0  # defaults are copies, not shared


def test_model_sampler_overrides_only_what_it_names():
    cfg = validate_trial_config(
        {**MINIMAL, "sampler": {"draws": 300}, "models": [{"id": "a", "sampler": {"chains": 2}}]}
    )
    s = sampler_for(cfg, cfg["models"][0])
    assert (s["draws"], s["chains"], s["tune"], s["engine"]) == (300, 2, 1000, "nutpie")


def test_every_problem_is_listed():
    bad = {**MINIMAL, "design": "cohort", "outcomes": {"y": {"family": "bernoulli", "link": "x"}}}
    with pytest.raises(QialignError) as err:
        validate_trial_config(bad, source="trial.yaml")
    msg = str(err.value)
    assert "trial.yaml: 2 problem(s)" in msg
    assert "design: 'cohort' is not one of" in msg
    assert "outcomes/y: unknown key 'link'; expected one of: family, better" in msg


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"data": {"clusters": "c.csv"}}, "give a patients table, a cluster_periods table"),
        ({"models": [{"id": "a"}, {"id": "a"}]}, "id 'a' is used more than once"),
        (
            {"outcomes": {"y": {"family": "bernoulli", "models": ["zz"]}}},
            "outcomes/y/models: 'zz' is not a model id",
        ),
        (
            {"outcomes": {"y": {"family": "bernoulli", "exposure": "bed_days"}}},
            "only count families take an exposure",
        ),
        ({"alignment": {"source": "survey"}}, "alignment/roles: required"),
        ({"alignment": {"propagation": "draws"}}, "alignment/propagation: 'draws' needs posterior draws"),
        (
            {"alignment": {"source": "given", "propagation": "joint"}},
            "alignment/propagation: 'joint' needs posterior draws",
        ),
        (
            {"alignment": {"source": "given", "score": "debiased"}},
            "alignment/score: 'debiased' is the survey score",
        ),
    ],
)
def test_cross_reference_problems(change, expected):
    with pytest.raises(QialignError, match=expected):
        validate_trial_config({**MINIMAL, **change})


def test_draws_and_joint_need_a_latent_survey_score():
    al = {"source": "survey", "method": "latent", "roles": {"clinical": ["d"], "managerial": ["m"]}}
    al["domains"] = {"a": ["q1"]}
    for mode in ("plugin", "draws", "joint"):
        cfg = validate_trial_config(
            {
                **MINIMAL,
                "data": {**MINIMAL["data"], "survey": "s.csv"},
                "alignment": {**al, "propagation": mode},
            }
        )
        assert cfg["alignment"]["propagation"] == mode
    # the de-biased score is a point score: latent plugin takes it, joint (the posterior itself) not
    survey = {**MINIMAL["data"], "survey": "s.csv"}
    cfg = validate_trial_config({**MINIMAL, "data": survey, "alignment": {**al, "score": "debiased"}})
    assert cfg["alignment"]["score"] == "debiased"
    with pytest.raises(QialignError, match="alignment/score: 'debiased'.*propagation: plugin"):
        validate_trial_config(
            {**MINIMAL, "data": survey, "alignment": {**al, "score": "debiased", "propagation": "joint"}}
        )
        assert cfg["alignment"]["draws"] == 20
    with pytest.raises(QialignError, match="'draws' needs posterior draws"):
        validate_trial_config(
            {
                **MINIMAL,
                "data": {**MINIMAL["data"], "survey": "s.csv"},
                "alignment": {**al, "method": "descriptive", "propagation": "draws"},
            }
        )


def test_models_for_outcome_subset():
    cfg = validate_trial_config(
        {
            **MINIMAL,
            "outcomes": {"y": {"family": "bernoulli", "models": ["b"]}, "z": {"family": "poisson"}},
            "models": [{"id": "a"}, {"id": "b"}],
        }
    )
    assert [m["id"] for m in models_for(cfg, "y")] == ["b"]
    assert [m["id"] for m in models_for(cfg, "z")] == ["a", "b"]


def test_load_errors_name_the_file(tmp_path):
    with pytest.raises(QialignError, match="not found"):
        load_trial_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("id: [unclosed\n")
    with pytest.raises(QialignError, match=f"{bad}: not valid YAML"):
        load_trial_config(bad)


def test_every_top_level_key_is_described():
    schema = yaml.safe_load(SCHEMA_PATH.read_text())
    missing = [k for k, v in schema["properties"].items() if "description" not in v and "$ref" not in v]
    assert missing == []


def _leaf_paths(schema: dict, node: dict, prefix: str) -> list[str]:
    """Dotted key paths of the schema (maps as <name>, lists as [])."""
    if "$ref" in node:
        node = schema["$defs"][node["$ref"].split("/")[-1]]
    out = []
    for key, sub in node.get("properties", {}).items():
        path = f"{prefix}{key}"
        out.append(path)
        out += _leaf_paths(schema, sub, path + ".")
        if sub.get("type") == "array" and isinstance(sub.get("items"), dict):
            out += _leaf_paths(schema, sub["items"], path + "[].")
    extra = node.get("additionalProperties")
    if isinstance(extra, dict) and "properties" in extra:
        out += _leaf_paths(schema, extra, prefix + "<name>.")
    return out


def test_config_readme_documents_every_key():
    from pathlib import Path

    schema = yaml.safe_load(SCHEMA_PATH.read_text())
    readme = (Path(__file__).parents[1] / "config" / "README.md").read_text()
    paths = _leaf_paths(schema, schema, "")
    assert len(paths) > 60
    undocumented = [
        p for p in paths if p.split(".")[-1] not in readme or ("." not in p and f"`{p}" not in readme)
    ]
    assert undocumented == []


def test_propagation_defaults_to_joint_for_the_plain_latent_survey_score_only():
    """Unset propagation: joint for source survey + method latent + score plain (the mode that
    estimates gamma rather than R gamma); plugin for descriptive, debiased or given scores; a value
    the file sets is kept."""
    al = {"source": "survey", "roles": {"clinical": ["d"], "managerial": ["m"]}, "domains": {"a": ["q1"]}}
    data = {**MINIMAL["data"], "survey": "s.csv"}

    def mode(**alignment):
        return validate_trial_config({**MINIMAL, "data": data, "alignment": {**al, **alignment}})[
            "alignment"
        ]["propagation"]

    assert mode(method="latent") == "joint"
    assert mode(method="latent", propagation="plugin") == "plugin"
    assert mode(method="latent", score="debiased") == "plugin"
    assert mode() == "plugin"  # descriptive (the method's default)
    assert validate_trial_config(MINIMAL)["alignment"]["propagation"] == "plugin"
